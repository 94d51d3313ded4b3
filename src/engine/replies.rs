//! Script replies turned into domain values and rejections: the one place
//! that knows the Lua return shapes documented in each script's header.

use crate::domain::{
    Allocation, AllocationChange, Event, EventBody, EventKind, EventLine, Hold, HoldLine,
    HoldStatus, LimitBreach, Order, OrderId, OrderLine, OutboxEntry, OutboxEvent, Partition,
    PoolLine, PoolShort, Rejection, ReservationId, Shortage, Sku, SkuSettings, SoldLine, StreamId,
};
use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use redis::{FromRedisValue, RedisResult, Value};
use std::collections::HashMap;

/// A script's reply: a status word and its fields, all as text.
#[derive(Debug)]
pub(crate) struct Reply {
    pub code: String,
    pub fields: Vec<String>,
}

impl FromRedisValue for Reply {
    fn from_redis_value(v: &Value) -> RedisResult<Self> {
        let mut items: Vec<String> = match v {
            Value::Array(items) => items.iter().map(text).collect(),
            other => vec![text(other)],
        };
        if items.is_empty() {
            items.push(String::new());
        }
        let code = items.remove(0);
        Ok(Reply {
            code,
            fields: items,
        })
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Okay => "OK".into(),
        _ => String::new(),
    }
}

/// Milliseconds since the epoch as a time.
pub(crate) fn time(ms: &str) -> anyhow::Result<DateTime<Utc>> {
    let n: i64 = ms
        .parse()
        .with_context(|| format!("not a time in ms: {ms:?}"))?;
    DateTime::from_timestamp_millis(n).ok_or_else(|| anyhow!("time out of range: {n}"))
}

fn optional(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn sku(s: &str) -> anyhow::Result<Sku> {
    Sku::parse(s).map_err(|m| anyhow!("bad SKU {s:?} in Redis: {m}"))
}

fn number(s: &str) -> anyhow::Result<i64> {
    s.parse().with_context(|| format!("not a number: {s:?}"))
}

/// The rejection a script's status word stands for, if it is one.
pub(crate) fn rejection(reply: &Reply) -> anyhow::Result<Option<Rejection>> {
    let f = &reply.fields;
    let rejection = match reply.code.as_str() {
        "not_found" => Rejection::NotFound,
        "expired" => Rejection::Expired,
        "released" => Rejection::Released,
        "committed" => Rejection::Committed,
        "empty" => Rejection::Empty,
        "order_taken" => Rejection::OrderTaken,
        "on_hand_required" => Rejection::OnHandRequired,
        "spread_on_hand" => Rejection::BadSetting {
            field: "on_hand",
            message: "cannot be set on a SKU spread over buckets (its units move between \
                      them): change it with POST /v1/skus/{sku}/adjustments",
        },
        "bucket_backorder" => Rejection::BadSetting {
            field: "buckets",
            message: "a SKU spread over buckets (now or before) cannot have a backorder limit",
        },
        "bucket_limit" => Rejection::BadSetting {
            field: "buckets",
            message: "can only change while the SKU has no per_customer_limit \
                      (each customer's count lives in one bucket): remove the limit \
                      first, or in this PUT; set it again in a later one",
        },
        "bucket_low_stock" => Rejection::BadSetting {
            field: "low_stock",
            message: "a SKU spread over buckets (now or before) has no low-stock threshold: \
                      no partition has its whole count",
        },
        "bucket_pools" => Rejection::BadSetting {
            field: "buckets",
            message: "a SKU with allocations or safety stock cannot be spread over buckets \
                      (nor can a SKU spread over buckets, now or before, have them)",
        },
        "pool_below_held" => Rejection::PoolBelowHeld(
            f.chunks_exact(3)
                .map(|c| {
                    Ok(PoolShort {
                        pool: c[0].clone(),
                        on_hand: number(&c[1])?,
                        held: number(&c[2])?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        "unknown_sku" => Rejection::UnknownSku(f.iter().map(|s| sku(s)).collect::<Result<_, _>>()?),
        "customer_required" => {
            Rejection::CustomerRequired(f.iter().map(|s| sku(s)).collect::<Result<_, _>>()?)
        }
        "sale_not_started" => Rejection::SaleNotStarted(
            f.chunks_exact(2)
                .map(|c| Ok((sku(&c[0])?, time(&c[1])?)))
                .collect::<anyhow::Result<_>>()?,
        ),
        "limit_exceeded" => Rejection::LimitExceeded(
            f.chunks_exact(4)
                .map(|c| {
                    Ok(LimitBreach {
                        sku: sku(&c[0])?,
                        limit: number(&c[1])?,
                        already: number(&c[2])?,
                        requested: number(&c[3])?,
                    })
                })
                .collect::<anyhow::Result<_>>()?,
        ),
        "insufficient" => Rejection::Insufficient(shortages(f)?),
        _ => return Ok(None),
    };
    Ok(Some(rejection))
}

/// `sku requested available …` triples.
pub(crate) fn shortages(f: &[String]) -> anyhow::Result<Vec<Shortage>> {
    f.chunks_exact(3)
        .map(|c| {
            Ok(Shortage {
                sku: sku(&c[0])?,
                requested: number(&c[1])?,
                available: number(&c[2])?,
            })
        })
        .collect()
}

/// A hold's record in one partition (`read_hold` in lua/common.lua): its
/// home record, or one of its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// held, committing, committed, released or expired.
    pub status: String,
    pub customer_id: Option<String>,
    pub channel: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub order_id: Option<String>,
    pub committed_ms: Option<i64>,
    pub payment_ref: Option<String>,
    /// This partition's lines, in basket order (a staged change counts with
    /// the larger of its old and new quantities).
    pub lines: Vec<(Sku, i64)>,
    /// The home partition's number, for a part.
    pub home: Option<u16>,
    /// The other partitions, for a home record.
    pub parts: Vec<u16>,
    /// Every SKU of the basket in basket order, for a home record with parts.
    pub basket: Vec<String>,
    /// The confirmed version.
    pub version: u64,
    /// A staged change: "version:token:ms", and its (sku, old, new).
    pub staged: Option<String>,
    pub changes: Vec<(String, i64, i64)>,
    /// Units of lines held from the allocation of the hold's channel.
    pub pooled: Vec<(String, i64)>,
}

impl Record {
    /// Parses a record: `st cust chan ca ea oid cat pref counted skus qtys`
    /// then, optionally, `home parts basket ver pv chg pq pqo`, joined by
    /// \x1f.
    pub fn parse(record: &str) -> anyhow::Result<Record> {
        let f: Vec<&str> = record.split('\x1f').collect();
        if !(11..=19).contains(&f.len()) {
            bail!("bad hold record {record:?}");
        }
        let field = |i: usize| f.get(i).copied().unwrap_or("");
        let qtys: Vec<&str> = field(10).split_ascii_whitespace().collect();
        let skus: Vec<&str> = field(9).split_ascii_whitespace().collect();
        if skus.len() != qtys.len() {
            bail!(
                "hold record with {} SKUs and {} quantities",
                skus.len(),
                qtys.len()
            );
        }
        let lines = skus
            .iter()
            .zip(&qtys)
            .map(|(s, q)| Ok((sku(s)?, number(q)?)))
            .collect::<anyhow::Result<_>>()?;
        let numbers = |s: &str| -> anyhow::Result<Vec<u16>> {
            s.split_ascii_whitespace()
                .map(|p| p.parse().with_context(|| format!("bad partition {p:?}")))
                .collect()
        };
        let chg: Vec<&str> = field(16).split_ascii_whitespace().collect();
        let pq: Vec<&str> = field(17).split_ascii_whitespace().collect();
        Ok(Record {
            status: field(0).to_owned(),
            customer_id: optional(field(1)),
            channel: optional(field(2)),
            created_ms: number(field(3))?,
            expires_ms: number(field(4))?,
            order_id: optional(field(5)),
            committed_ms: optional(field(6)).map(|s| number(&s)).transpose()?,
            payment_ref: optional(field(7)),
            lines,
            home: optional(field(11)).map(|s| s.parse()).transpose()?,
            parts: numbers(field(12))?,
            basket: field(13)
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect(),
            version: optional(field(14))
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1),
            staged: optional(field(15)),
            changes: chg
                .chunks_exact(3)
                .map(|c| Ok((c[0].to_owned(), number(c[1])?, number(c[2])?)))
                .collect::<anyhow::Result<_>>()?,
            // '*': every line in full.
            pooled: if field(17) == "*" {
                skus.iter()
                    .zip(&qtys)
                    .map(|(s, q)| Ok(((*s).to_owned(), number(q)?)))
                    .collect::<anyhow::Result<_>>()?
            } else {
                pq.chunks_exact(2)
                    .map(|c| Ok((c[0].to_owned(), number(c[1])?)))
                    .collect::<anyhow::Result<_>>()?
            },
        })
    }

    /// What the record holds per ledger account: each line's units held
    /// from the channel's allocation (`sku@channel`), the rest under the
    /// SKU.
    pub fn held_by_account(&self) -> Vec<(String, i64)> {
        let mut out = Vec::with_capacity(self.lines.len());
        for (sku, qty) in &self.lines {
            let pooled = self
                .pooled
                .iter()
                .find(|(s, _)| s == sku.as_str())
                .map_or(0, |(_, n)| *n);
            out.push((sku.to_string(), qty - pooled));
            if pooled > 0 {
                let channel = self.channel.as_deref().unwrap_or_default();
                out.push((crate::domain::pool_account(sku, channel), pooled));
            }
        }
        out
    }

    /// The version of the staged change, if any.
    pub fn staged_version(&self) -> Option<u64> {
        self.staged
            .as_deref()
            .and_then(|pv| pv.split(':').next())
            .and_then(|v| v.parse().ok())
    }

    /// When the staged change was staged (ms), if any.
    pub fn staged_at(&self) -> Option<i64> {
        self.staged
            .as_deref()
            .and_then(|pv| pv.rsplit(':').next())
            .and_then(|ms| ms.parse().ok())
    }

    /// The lines as confirmed: a staged change counts with its new
    /// quantities if `taken` (the home took it), else with its old ones.
    pub fn confirmed_lines(&self, taken: bool) -> Vec<(Sku, i64)> {
        let mut lines = self.lines.clone();
        for (name, old, new) in &self.changes {
            let keep = if taken { *new } else { *old };
            match lines.iter_mut().find(|(s, _)| s.as_str() == name) {
                Some(line) => line.1 = keep,
                None if keep > 0 => {
                    if let Ok(s) = Sku::parse(name) {
                        lines.push((s, keep));
                    }
                }
                None => {}
            }
        }
        lines.retain(|(_, q)| *q > 0);
        lines
    }
}

/// A hold from its home record and the confirmed lines of its parts (none
/// for a basket in one partition). With `now_ms`, a held hold whose expiry
/// is not after it reads as expired.
pub(crate) fn hold_of(
    id: &ReservationId,
    home: &Record,
    part_lines: Vec<(Sku, i64)>,
    now_ms: Option<i64>,
) -> anyhow::Result<Hold> {
    let mut status = match home.status.as_str() {
        // A commit under way is decided: only its last steps are left.
        "committing" => HoldStatus::Committed,
        st => HoldStatus::parse(st).ok_or_else(|| anyhow!("bad hold state {st:?}"))?,
    };
    if status == HoldStatus::Held && now_ms.is_some_and(|now| home.expires_ms <= now) {
        status = HoldStatus::Expired;
    }
    let mut lines: Vec<(Sku, i64)> = home.lines.clone();
    lines.extend(part_lines);
    if !home.basket.is_empty() {
        let at = |s: &Sku| home.basket.iter().position(|b| b == s.as_str());
        lines.sort_by_key(|(s, _)| at(s).unwrap_or(usize::MAX));
    }
    Ok(Hold {
        id: id.clone(),
        status,
        customer_id: home.customer_id.clone(),
        channel: home.channel.clone(),
        lines: lines
            .into_iter()
            .map(|(sku, qty)| HoldLine { sku, qty })
            .collect(),
        created_at: time(&home.created_ms.to_string())?,
        expires_at: time(&home.expires_ms.to_string())?,
        order_id: home
            .order_id
            .as_deref()
            .map(OrderId::parse)
            .transpose()
            .map_err(|m| anyhow!(m))?,
        committed_at: home
            .committed_ms
            .map(|ms| time(&ms.to_string()))
            .transpose()?,
        payment_ref: home.payment_ref.clone(),
    })
}

/// A hold kept in one partition, from its record.
pub(crate) fn hold(id: &ReservationId, record: &str, now_ms: Option<i64>) -> anyhow::Result<Hold> {
    hold_of(id, &Record::parse(record)?, Vec::new(), now_ms)
}

/// The order a committed hold became (not yet known to be persisted).
pub(crate) fn order_of(hold: &Hold) -> anyhow::Result<Order> {
    Ok(Order {
        order_id: hold
            .order_id
            .clone()
            .context("committed hold without order id")?,
        reservation_id: hold.id.clone(),
        customer_id: hold.customer_id.clone(),
        channel: hold.channel.clone(),
        payment_ref: hold.payment_ref.clone(),
        lines: hold
            .lines
            .iter()
            .map(|l| OrderLine {
                sku: l.sku.clone(),
                qty: l.qty,
                returned_qty: 0,
            })
            .collect(),
        committed_at: hold.committed_at.context("committed hold without time")?,
        persisted: false,
    })
}

/// "sku qty …" pairs as order lines.
pub(crate) fn order_lines(s: &str) -> anyhow::Result<Vec<OrderLine>> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    words
        .chunks_exact(2)
        .map(|c| {
            Ok(OrderLine {
                sku: sku(c[0])?,
                qty: number(c[1])?,
                returned_qty: 0,
            })
        })
        .collect()
}

/// "sku qty on_hand_after …" triples.
pub(crate) fn sold_lines(s: &str) -> anyhow::Result<Vec<SoldLine>> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    words
        .chunks_exact(3)
        .map(|c| {
            Ok(SoldLine {
                sku: sku(c[0])?,
                qty: number(c[1])?,
                on_hand_after: number(c[2])?,
            })
        })
        .collect()
}

/// "sku@chan n share_after …" triples (the allocations' part of a sale or
/// a return).
pub(crate) fn pool_lines(s: &str) -> anyhow::Result<Vec<PoolLine>> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    words
        .chunks_exact(3)
        .map(|c| {
            let (name, channel) = c[0]
                .split_once('@')
                .ok_or_else(|| anyhow!("bad allocation {:?}", c[0]))?;
            Ok(PoolLine {
                sku: sku(name)?,
                channel: channel.to_owned(),
                qty: number(c[1])?,
                share_after: number(c[2])?,
            })
        })
        .collect()
}

/// A SKU's pools as the scripts reply them ("safety chan share held avail
/// …", '' for none): its safety stock and allocations.
pub(crate) fn pools(s: &str) -> anyhow::Result<(i64, Vec<Allocation>)> {
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    let Some((safety, rest)) = words.split_first() else {
        return Ok((0, Vec::new()));
    };
    let allocations = rest
        .chunks_exact(4)
        .map(|c| {
            Ok(Allocation {
                channel: c[0].to_owned(),
                on_hand: number(c[1])?,
                held: number(c[2])?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((number(safety)?, allocations))
}

/// "buckets span" as the scripts keep it ('' for a SKU never spread: 1 1).
pub(crate) fn buckets(bk: &str) -> anyhow::Result<(i32, i32)> {
    if bk.is_empty() {
        return Ok((1, 1));
    }
    let (n, span) = bk
        .split_once(' ')
        .ok_or_else(|| anyhow!("bad buckets {bk:?}"))?;
    Ok((n.parse()?, span.parse()?))
}

/// An outbox stream entry (fields as the scripts write them).
pub(crate) fn outbox_entry(
    partition: Partition,
    id: &str,
    f: &HashMap<String, String>,
) -> anyhow::Result<OutboxEntry> {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let id: StreamId = id.parse().map_err(|m: String| anyhow!(m))?;
    let event = match get("kind") {
        "commit" => {
            let sold = sold_lines(get("lines"))?;
            let order = Order {
                order_id: OrderId::parse(get("order")).map_err(|m| anyhow!(m))?,
                reservation_id: ReservationId::parse(get("res"))
                    .ok_or_else(|| anyhow!("bad reservation id in outbox"))?,
                customer_id: optional(get("cust")),
                channel: optional(get("chan")),
                payment_ref: optional(get("pref")),
                lines: match optional(get("all")) {
                    // A basket over several partitions: every line.
                    Some(all) => order_lines(&all)?,
                    None => sold
                        .iter()
                        .map(|s| OrderLine {
                            sku: s.sku.clone(),
                            qty: s.qty,
                            returned_qty: 0,
                        })
                        .collect(),
                },
                committed_at: time(get("at"))?,
                persisted: false,
            };
            OutboxEvent::Commit {
                order,
                sold,
                pools: pool_lines(get("pools"))?,
            }
        }
        "part" => OutboxEvent::Part {
            order_id: OrderId::parse(get("order")).map_err(|m| anyhow!(m))?,
            reservation_id: ReservationId::parse(get("res"))
                .ok_or_else(|| anyhow!("bad reservation id in outbox"))?,
            sold: sold_lines(get("lines"))?,
            pools: pool_lines(get("pools"))?,
            at: time(get("at"))?,
        },
        "sku" => OutboxEvent::Sku {
            sku: sku(get("sku"))?,
            created: get("created") == "1",
            delta: number(get("delta"))?,
            on_hand_after: number(get("on_hand_after"))?,
            settings: SkuSettings {
                backorder_limit: number(get("bo"))?,
                per_customer_limit: optional(get("pcl")).map(|s| number(&s)).transpose()?,
                sale_starts_at: optional(get("ssa")).map(|s| time(&s)).transpose()?,
                buckets: buckets(get("bk"))?.0,
                bucket_span: buckets(get("bk"))?.1,
                safety_stock: optional(get("safety"))
                    .map(|s| number(&s))
                    .transpose()?
                    .unwrap_or(0),
                allocations: get("chans")
                    .split_ascii_whitespace()
                    .map(str::to_owned)
                    .collect(),
                low_stock: optional(get("low")).map(|s| number(&s)).transpose()?,
            },
            allocations: get("pools")
                .split_ascii_whitespace()
                .collect::<Vec<_>>()
                .chunks_exact(3)
                .map(|c| {
                    Ok(AllocationChange {
                        channel: c[0].to_owned(),
                        share_after: number(c[1])?,
                        delta: number(c[2])?,
                    })
                })
                .filter(|c| !matches!(c, Ok(AllocationChange { delta: 0, .. })))
                .collect::<anyhow::Result<_>>()?,
            safety_delta: optional(get("safety_delta"))
                .map(|s| number(&s))
                .transpose()?
                .unwrap_or(0),
            at: time(get("at"))?,
        },
        "adjustment" => OutboxEvent::Adjustment {
            sku: sku(get("sku"))?,
            adjustment_id: get("adj").to_owned(),
            delta: number(get("delta"))?,
            on_hand_after: number(get("on_hand_after"))?,
            reason: optional(get("reason")),
            at: time(get("at"))?,
        },
        "transfer" => OutboxEvent::Transfer {
            sku: sku(get("sku"))?,
            transfer_id: get("xfer").to_owned(),
            delta: number(get("delta"))?,
            on_hand_after: number(get("on_hand_after"))?,
            at: time(get("at"))?,
        },
        "return" => OutboxEvent::Return {
            return_id: get("ret").to_owned(),
            order_id: get("order").to_owned(),
            lines: sold_lines(get("lines"))?,
            pools: pool_lines(get("pools"))?,
            at: time(get("at"))?,
        },
        other => bail!("unknown outbox entry kind {other:?} at {id}"),
    };
    Ok(OutboxEntry {
        partition,
        id,
        event,
    })
}

/// An entry of a partition's events stream (fields as `flush_events` in
/// lua/common.lua writes them).
pub(crate) fn event(
    partition: Partition,
    id: &str,
    f: &HashMap<String, String>,
) -> anyhow::Result<Event> {
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    let count = |k: &str| -> anyhow::Result<Option<i64>> {
        match get(k) {
            "" | "-" => Ok(None),
            n => number(n).map(Some),
        }
    };
    let kind: EventKind = get("t").parse().map_err(|m: String| anyhow!(m))?;
    let body = match kind.as_str().split('.').next() {
        Some("hold") => {
            // Three lists in line order: SKUs, quantities, available after.
            let skus: Vec<&str> = get("skus").split_ascii_whitespace().collect();
            let qtys: Vec<&str> = get("qtys").split_ascii_whitespace().collect();
            let avail: Vec<&str> = get("avail").split_ascii_whitespace().collect();
            if qtys.len() != skus.len() || avail.len() != skus.len() {
                bail!("bad event lines {:?} {:?} {:?}", skus, qtys, avail);
            }
            let lines = (0..skus.len())
                .map(|i| {
                    Ok(EventLine {
                        sku: skus[i].to_owned(),
                        quantity: number(qtys[i])?,
                        available: match avail[i] {
                            "-" => None,
                            a => Some(number(a)?),
                        },
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            EventBody::Hold {
                reservation_id: get("hold").to_owned(),
                part: get("part") == "1",
                customer_id: optional(get("cust")),
                channel: optional(get("chan")),
                expires_at_ms: count("ea")?,
                order_id: optional(get("oid")),
                lines,
            }
        }
        Some("sku") => EventBody::Sku {
            sku: get("sku").to_owned(),
            available: count("avail")?,
            on_hand: count("onhand")?,
            low_stock: count("low")?,
            delta: count("delta")?,
            reason: optional(get("reason")),
            reference: optional(get("ref")),
            note: optional(get("note")),
        },
        _ => EventBody::Drift {
            sku: get("sku").to_owned(),
            pool: optional(get("pool")),
            expected_on_hand: number(get("expected_on_hand"))?,
            expected_held: number(get("expected_held"))?,
            on_hand: count("on_hand")?,
            held: number(get("held"))?,
        },
    };
    Ok(Event {
        partition,
        stream_id: id.parse().map_err(|m: String| anyhow!(m))?,
        kind,
        at_ms: number(get("at"))?,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(words: &[&str]) -> Reply {
        Reply {
            code: words[0].into(),
            fields: words[1..].iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn script_codes_become_rejections_with_their_details() {
        let r = rejection(&reply(&["insufficient", "A", "5", "2", "B", "1", "0"])).unwrap();
        match r {
            Some(Rejection::Insufficient(s)) => {
                assert_eq!(s.len(), 2);
                assert_eq!((s[0].requested, s[0].available), (5, 2));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(rejection(&reply(&["ok"])).unwrap().is_none());
    }

    #[test]
    fn a_hold_record_parses_lines_and_empty_fields() {
        let id = ReservationId::random(Partition(0));
        let record = [
            "held", "", "web", "1000", "2000", "", "", "", "B", "A B", "2 1",
        ]
        .join("\x1f");
        let h = hold(&id, &record, None).unwrap();
        assert_eq!(h.customer_id, None);
        assert_eq!(h.lines.len(), 2);
        assert_eq!(h.lines[1].qty, 1);
        assert_eq!(h.expires_at.timestamp_millis(), 2000);
        assert_eq!(h.status, HoldStatus::Held);
    }

    #[test]
    fn a_held_hold_past_its_expiry_reads_as_expired() {
        let id = ReservationId::random(Partition(0));
        let record = ["held", "c", "", "1000", "2000", "", "", "", "", "A", "1"].join("\x1f");
        assert_eq!(
            hold(&id, &record, Some(1999)).unwrap().status,
            HoldStatus::Held
        );
        assert_eq!(
            hold(&id, &record, Some(2000)).unwrap().status,
            HoldStatus::Expired
        );
    }

    #[test]
    fn a_part_record_reads_its_home_its_stage_and_lines_as_confirmed() {
        let record = [
            "held",
            "c",
            "",
            "1000",
            "2000",
            "",
            "",
            "",
            "",
            "A B",
            "3 1",
            "5",
            "",
            "",
            "1",
            "2:t:1500",
            "A 1 3 B 1 0",
        ]
        .join("\x1f");
        let r = Record::parse(&record).unwrap();
        assert_eq!(r.home, Some(5));
        assert_eq!((r.staged_version(), r.staged_at()), (Some(2), Some(1500)));
        let qty = |taken| -> Vec<i64> { r.confirmed_lines(taken).iter().map(|l| l.1).collect() };
        assert_eq!(qty(true), [3]);
        assert_eq!(qty(false), [1, 1]);
    }

    #[test]
    fn a_record_with_missing_fields_is_refused() {
        let id = ReservationId::random(Partition(0));
        assert!(hold(&id, "held\x1fc", None).is_err());
    }
}
