//! What the admin console reads besides the API's own views: how many hold
//! records are live, the oldest outbox entry not yet persisted, the commits
//! answered 202 per minute (counted here, `lua/tally.lua`), and the live
//! holds on one SKU. All reads but the tally; none runs on a request of
//! the storefront's.

use super::replies::Record;
use super::{Engine, EngineError};
use crate::domain::{Partition, ReservationId, Sku, StreamId};
use std::collections::HashMap;

/// Minutes of 202 counts kept.
pub const TALLY_MINUTES: i64 = 120;

/// Hold records read per MGET when looking for a SKU's holds.
const HOLDS_PAGE: usize = 500;

/// Where a live hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveStatus {
    /// Units are held.
    Held,
    /// A commit is under way.
    Committing,
}

impl LiveStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveStatus::Held => "held",
            LiveStatus::Committing => "committing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "held" => Some(LiveStatus::Held),
            "committing" => Some(LiveStatus::Committing),
            _ => None,
        }
    }
}

/// A live hold of some units of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldOnSku {
    /// The reservation.
    pub id: ReservationId,
    /// Its units of the SKU (a staged change counts with the larger of its
    /// old and new quantities).
    pub qty: i64,
    /// Held, or a commit under way.
    pub status: LiveStatus,
    /// The customer the hold was made for, if named.
    pub customer_id: Option<String>,
    /// The channel it was made on, if named.
    pub channel: Option<String>,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it expires (Unix ms).
    pub expires_ms: i64,
}

/// The live holds on a SKU, soonest to expire first.
#[derive(Debug, Clone, Default)]
pub struct HoldsOnSku {
    /// The holds (commits under way among them), by expiry.
    pub holds: Vec<HoldOnSku>,
    /// Hold records read.
    pub scanned: usize,
    /// False when one of the SKU's partitions had more live hold records
    /// than were read: `holds` are then the soonest to expire, and later
    /// ones may be missing.
    pub complete: bool,
}

impl Engine {
    /// Live hold records in every partition: holds and commits under way
    /// (a basket holding stock in several partitions has a record in each).
    pub async fn live_hold_records(&self) -> Result<u64, EngineError> {
        let mut total = 0;
        for p in self.partitions().all() {
            let keys = self.keys.part(p);
            let (exp, committing) = (keys.expiry(), keys.committing());
            let counts: (u64, u64) = self
                .run(|mut conn| async move {
                    let a = redis::cmd("ZCARD").arg(exp).query_async(&mut conn).await?;
                    let b = redis::cmd("ZCARD")
                        .arg(committing)
                        .query_async(&mut conn)
                        .await?;
                    Ok((a, b))
                })
                .await?;
            total += counts.0 + counts.1;
        }
        Ok(total)
    }

    /// The ids of partition `p`'s first `count` outbox entries after
    /// `after`, oldest first.
    pub async fn outbox_ids_after(
        &self,
        p: Partition,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<StreamId>, EngineError> {
        let page = self
            .entries_after(self.keys.part(p).outbox(), after, count)
            .await?;
        Ok(page.iter().filter_map(|(id, _)| id.parse().ok()).collect())
    }

    /// Counts one commit answered 202 in the current minute of Redis's
    /// clock.
    pub async fn tally_not_persisted(&self) -> Result<(), EngineError> {
        let key = self.keys.tally();
        let script = &self.scripts.tally;
        let _: i64 = self
            .call(super::Effect::Writes, |mut conn| async move {
                script
                    .key(key)
                    .arg(TALLY_MINUTES)
                    .invoke_async(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    /// Commits answered 202 per minute (Unix time / 60), of the last
    /// [`TALLY_MINUTES`], oldest first; minutes without any left out.
    pub async fn not_persisted_per_minute(&self) -> Result<Vec<(i64, i64)>, EngineError> {
        let key = self.keys.tally();
        let counts: HashMap<String, i64> =
            self.run(|mut conn| async move {
                redis::cmd("HGETALL").arg(key).query_async(&mut conn).await
            })
            .await?;
        let mut minutes: Vec<(i64, i64)> = counts
            .into_iter()
            .filter_map(|(m, n)| Some((m.parse().ok()?, n)))
            .collect();
        minutes.sort_unstable();
        Ok(minutes)
    }

    /// The live holds with units of `sku`, reading at most `most` hold
    /// records (commits under way, then those soonest to expire) in each
    /// partition that can hold its lines: its own and, when spread, its
    /// other buckets.
    pub async fn holds_on(&self, sku: &Sku, most: usize) -> Result<HoldsOnSku, EngineError> {
        let parts: Vec<Partition> = match self.spread_of(sku) {
            Some(spread) => self.buckets(sku, spread.span).collect(),
            None => vec![self.keys.of_sku(sku)],
        };
        let reads = parts.iter().map(|p| self.holds_in(*p, sku, most));
        let mut out = HoldsOnSku {
            complete: true,
            ..Default::default()
        };
        // A partition read in part is only known below the expiry score of
        // its first record not read: later holds elsewhere are left out
        // too, so the list is always the soonest ones.
        let mut unread_from = i64::MAX;
        let mut found: HashMap<ReservationId, (HoldOnSku, Option<i64>)> = HashMap::new();
        for read in futures_util::future::try_join_all(reads).await? {
            out.scanned += read.scanned;
            if let Some(from) = read.unread_from {
                out.complete = false;
                unread_from = unread_from.min(from);
            }
            for (hold, score) in read.holds {
                found
                    .entry(hold.id.clone())
                    .and_modify(|(h, s)| {
                        h.qty += hold.qty;
                        *s = (*s).min(score);
                    })
                    .or_insert((hold, score));
            }
        }
        out.holds = found
            .into_values()
            .filter(|(_, score)| score.is_none_or(|score| score < unread_from))
            .map(|(hold, _)| hold)
            .collect();
        out.holds
            .sort_by(|a, b| (a.expires_ms, a.id.as_str()).cmp(&(b.expires_ms, b.id.as_str())));
        Ok(out)
    }

    /// The live holds with units of `sku` among the first `most` hold
    /// records of partition `p`.
    async fn holds_in(
        &self,
        p: Partition,
        sku: &Sku,
        most: usize,
    ) -> Result<PartHolds, EngineError> {
        let keys = self.keys.part(p);
        // Both sets as of one moment (a hold moves from one to the other),
        // one more than read of each, to know whether there are more.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for set in [keys.committing(), keys.expiry()] {
            pipe.cmd("ZRANGE")
                .arg(set)
                .arg(0)
                .arg(most)
                .arg("WITHSCORES");
        }
        type Scored = Vec<(String, f64)>;
        let (committing, expiring): (Scored, Scored) = self
            .run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        let parse = |set: Scored| {
            set.into_iter()
                .filter_map(|(id, score)| Some((ReservationId::parse(&id)?, score as i64)))
        };
        // Commits under way first, whatever their expiry: no score to cut on.
        let mut ids: Vec<(ReservationId, Option<i64>)> =
            parse(committing).map(|(id, _)| (id, None)).collect();
        ids.extend(parse(expiring).map(|(id, score)| (id, Some(score))));
        let mut unread_from = None;
        if ids.len() > most {
            // Read in part: known below the score of the first not read (a
            // commit under way not read: nothing of the expiry set known).
            unread_from = Some(ids[most].1.unwrap_or(i64::MIN));
            ids.truncate(most);
        }
        let mut out = PartHolds {
            scanned: ids.len(),
            unread_from,
            holds: Vec::new(),
        };
        for chunk in ids.chunks(HOLDS_PAGE) {
            let hold_keys: Vec<String> = chunk.iter().map(|(id, _)| keys.hold(id)).collect();
            let records = self.strings(&hold_keys).await?;
            for ((id, score), record) in chunk.iter().zip(records) {
                let Some(record) = record else { continue };
                let record = Record::parse(&record).map_err(EngineError::Internal)?;
                let Some(status) = LiveStatus::parse(&record.status) else {
                    continue;
                };
                let qty: i64 = record
                    .lines
                    .iter()
                    .filter(|(s, _)| s == sku)
                    .map(|(_, q)| q)
                    .sum();
                if qty > 0 {
                    let hold = HoldOnSku {
                        id: id.clone(),
                        qty,
                        status,
                        customer_id: record.customer_id,
                        channel: record.channel,
                        created_ms: record.created_ms,
                        expires_ms: record.expires_ms,
                    };
                    out.holds.push((hold, *score));
                }
            }
        }
        Ok(out)
    }
}

/// What one partition's read found.
struct PartHolds {
    /// Each with its score in the expiry set (None: a commit under way).
    holds: Vec<(HoldOnSku, Option<i64>)>,
    scanned: usize,
    /// Read in part: holds of this expiry score (Unix ms) and later were
    /// not all read.
    unread_from: Option<i64>,
}
