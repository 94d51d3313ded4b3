//! The stock engine: live counts, holds and the outbox in Redis. Every change
//! of live counts is one Lua script call (`lua/`), so it is all-or-nothing
//! and atomic with respect to every other change.

mod connections;
mod idempotency;
mod keys;
mod recovery;
mod replies;
mod scripts;

pub use idempotency::{Begun, Claim, IdempotencyStore, StoredResponse, RENEW_EVERY};
pub use keys::Keys;
pub use recovery::{LeaseOp, ServerState};

use crate::configuration::RedisSettings;
use crate::domain::{
    AdjustmentRequest, Hold, Order, OrderId, OutboxEntry, OutboxEvent, PatchRequest, PutSkuRequest,
    Rejection, ReservationId, ReserveRequest, Setting, Shortage, Sku, SkuView, StreamId,
};
use crate::metrics as m;
use anyhow::{anyhow, Context};
use connections::Connections;
use recovery::Watch;
use redis::aio::ConnectionManager as Connection;
use replies::Reply;
use scripts::Scripts;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Why an engine call did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The stock rules refused; nothing changed.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// Redis could not be reached, or refused the call; nothing changed.
    #[error("redis is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// A write was sent but no answer came in time (or the connection
    /// broke): it may or may not have been made. Every write is idempotent
    /// on its ids, so a retry with the same idempotency key is safe.
    #[error("redis did not answer a write in time; its outcome is unknown")]
    OutcomeUnknown(#[source] anyhow::Error),
    /// Anything else: a bug or corrupt data.
    #[error("stock engine failure")]
    Internal(#[source] anyhow::Error),
}

impl From<redis::RedisError> for EngineError {
    fn from(e: redis::RedisError) -> Self {
        match Failure::of(&e) {
            Failure::Refused | Failure::Unanswered => EngineError::Unavailable(e.into()),
            Failure::Other => EngineError::Internal(e.into()),
        }
    }
}

/// How a Redis call failed, as far as its effect goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Never ran: no connection, or Redis refused it (loading, try again).
    Refused,
    /// Sent, perhaps, but not answered: timed out, or the connection broke.
    Unanswered,
    /// Answered with an error: a bug or corrupt data.
    Other,
}

impl Failure {
    fn of(e: &redis::RedisError) -> Failure {
        if e.is_connection_refusal()
            || matches!(
                e.kind(),
                redis::ErrorKind::BusyLoadingError | redis::ErrorKind::TryAgain
            )
        {
            Failure::Refused
        } else if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
            Failure::Unanswered
        } else {
            Failure::Other
        }
    }
}

/// Whether a call changes Redis, which decides what an unanswered call
/// means to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Reads,
    Writes,
}

impl From<anyhow::Error> for EngineError {
    fn from(e: anyhow::Error) -> Self {
        EngineError::Internal(e)
    }
}

/// A new hold, with what it could not hold when partial holds were allowed.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The hold.
    pub hold: Hold,
    /// Lines held short (only with `allow_partial`).
    pub shortages: Vec<Shortage>,
    /// The hold existed already: this was a retry of the same request.
    pub replayed: bool,
}

/// The outcome of a commit in Redis.
#[derive(Debug, Clone)]
pub struct Committed {
    /// The order made, not yet known to be in Postgres.
    pub order: Order,
    /// The outbox entry of this sale when this call made it; `None` when the
    /// hold had been committed before.
    pub outbox: Option<OutboxEntry>,
}

/// A SKU after `put_sku`.
#[derive(Debug, Clone)]
pub struct SkuPut {
    /// The SKU's live view.
    pub view: SkuView,
    /// Whether this call created it.
    pub created: bool,
    /// The outbox entry of the change, if anything changed.
    pub outbox: Option<StreamId>,
}

/// The outcome of an adjustment in Redis.
#[derive(Debug, Clone)]
pub enum Adjusted {
    /// Applied now; the SKU after it and the outbox entry.
    Applied(SkuView, StreamId),
    /// Applied before, to this SKU by this delta.
    Before(Sku, i64),
}

/// The Redis side of stockhold.
#[derive(Clone)]
pub struct Engine {
    conns: Arc<Connections>,
    keys: Keys,
    scripts: Arc<Scripts>,
    watch: Arc<Watch>,
    call_timeout: Duration,
}

impl Engine {
    /// An engine on the Redis of `settings`; connects lazily.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let call_timeout = Duration::from_millis(settings.call_timeout_ms);
        let conns = Connections::new(&settings.url, settings.connections, call_timeout)
            .context("parsing redis.url")?;
        Ok(Engine {
            conns: Arc::new(conns),
            keys: Keys::new(&settings.key_prefix),
            scripts: Arc::new(Scripts::load()),
            watch: Arc::default(),
            call_timeout,
        })
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Redis connections open, and how many there may be (for metrics).
    pub fn connections(&self) -> (usize, usize) {
        self.conns.opened()
    }

    /// Runs one Redis call that only reads (or whose effect is checked by
    /// its caller) on a shared connection, bounded in time.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, EngineError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call(Effect::Reads, call).await
    }

    async fn call<T, F, Fut>(&self, effect: Effect, call: F) -> Result<T, EngineError>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.conns.get().await.inspect_err(|_| {
            self.watch.connection_failed();
        })?;
        let failure = match tokio::time::timeout(self.call_timeout, call(conn)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(e)) => (Failure::of(&e), anyhow::Error::from(e)),
            Err(_) => (Failure::Unanswered, anyhow!("Redis call timed out")),
        };
        Err(match failure {
            (Failure::Other, e) => EngineError::Internal(e),
            (Failure::Refused, e) => {
                self.watch.connection_failed();
                EngineError::Unavailable(e)
            }
            (Failure::Unanswered, e) => {
                self.watch.connection_failed();
                match effect {
                    Effect::Reads => EngineError::Unavailable(e),
                    Effect::Writes => EngineError::OutcomeUnknown(e),
                }
            }
        })
    }

    /// Runs a script that may write: after a connection failure the server
    /// is checked first (`check_server`), and an unanswered call is an
    /// unknown outcome.
    async fn write_script(
        &self,
        script: &redis::Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Reply, EngineError> {
        self.check_server().await?;
        self.invoke(Effect::Writes, script, key, args).await
    }

    /// Runs a script that only reads, or one of a rebuild (which checks
    /// its lease itself).
    async fn script(
        &self,
        script: &redis::Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Reply, EngineError> {
        self.invoke(Effect::Reads, script, key, args).await
    }

    async fn invoke(
        &self,
        effect: Effect,
        script: &redis::Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Reply, EngineError> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        let reply: Reply = self
            .call(effect, |mut conn| async move {
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        if reply.code == "not_ready" {
            self.watch.want_rebuild();
            return Err(EngineError::Unavailable(anyhow!(
                "Redis is being rebuilt from the ledger"
            )));
        }
        Ok(reply)
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.run(
            |mut conn| async move { redis::cmd("PING").query_async::<String>(&mut conn).await },
        )
        .await
        .map(drop)
    }

    /// Holds every line of `req` under `id`, or nothing.
    #[tracing::instrument(skip_all, fields(reservation = %id, lines = req.lines.len()))]
    pub async fn reserve(
        &self,
        id: &ReservationId,
        req: &ReserveRequest,
    ) -> Result<Reserved, EngineError> {
        let mut args = vec![
            self.keys.base().to_owned(),
            id.to_string(),
            (req.ttl_seconds * 1000).to_string(),
            req.customer_id.clone().unwrap_or_default(),
            req.channel.clone().unwrap_or_default(),
            if req.allow_partial { "1" } else { "0" }.to_owned(),
        ];
        push_lines_with_record(&mut args, &req.lines);
        let reply = self
            .write_script(&self.scripts.reserve, self.keys.hold(id), args)
            .await?;
        if reply.code == "exists" {
            let hold = self.hold(id).await?.ok_or(Rejection::NotFound)?;
            return Ok(Reserved {
                hold,
                shortages: Vec::new(),
                replayed: true,
            });
        }
        let hold = hold_from(id, &reply)?;
        metrics::counter!(m::RESERVATIONS_CREATED).increment(1);
        let words: Vec<String> = reply.fields[1]
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(Reserved {
            hold,
            shortages: replies::shortages(&words)?,
            replayed: false,
        })
    }

    /// Sets line quantities and/or restarts the TTL of a held hold.
    #[tracing::instrument(skip_all, fields(reservation = %id, lines = req.lines.len()))]
    pub async fn patch(&self, id: &ReservationId, req: &PatchRequest) -> Result<Hold, EngineError> {
        let mut args = vec![
            self.keys.base().to_owned(),
            id.to_string(),
            req.ttl_seconds
                .map(|s| (s * 1000).to_string())
                .unwrap_or_default(),
        ];
        push_lines(&mut args, &req.lines);
        let reply = self
            .write_script(&self.scripts.patch, self.keys.hold(id), args)
            .await?;
        hold_from(id, &reply)
    }

    /// Turns a held hold into a sale and its outbox entry.
    #[tracing::instrument(skip_all, fields(reservation = %id, order = %order_id))]
    pub async fn commit(
        &self,
        id: &ReservationId,
        order_id: &OrderId,
        payment_ref: Option<&str>,
    ) -> Result<Committed, EngineError> {
        let args = vec![
            self.keys.base().to_owned(),
            id.to_string(),
            order_id.to_string(),
            payment_ref.unwrap_or_default().to_owned(),
        ];
        let reply = self
            .write_script(&self.scripts.commit, self.keys.hold(id), args)
            .await?;
        let hold = hold_from(id, &reply)?;
        let order = replies::order_of(&hold)?;
        let outbox = match reply.fields[1].as_str() {
            "1" => {
                metrics::counter!(m::RESERVATIONS_COMMITTED).increment(1);
                Some(OutboxEntry {
                    id: reply.fields[2].parse().map_err(|m: String| anyhow!(m))?,
                    event: OutboxEvent::Commit {
                        order: order.clone(),
                        sold: replies::sold_lines(&reply.fields[3])?,
                    },
                })
            }
            _ => None,
        };
        Ok(Committed { order, outbox })
    }

    /// Gives a hold's units back (an expired hold is left expired).
    #[tracing::instrument(skip_all, fields(reservation = %id))]
    pub async fn release(&self, id: &ReservationId) -> Result<Hold, EngineError> {
        let args = vec![self.keys.base().to_owned(), id.to_string()];
        let reply = self
            .write_script(&self.scripts.release, self.keys.hold(id), args)
            .await?;
        let hold = hold_from(id, &reply)?;
        if hold.status == crate::domain::HoldStatus::Released {
            metrics::counter!(m::RESERVATIONS_RELEASED).increment(1);
        }
        Ok(hold)
    }

    /// Reads a hold as the API shows it.
    pub async fn hold(&self, id: &ReservationId) -> Result<Option<Hold>, EngineError> {
        let reply = self
            .script(&self.scripts.get_hold, self.keys.hold(id), Vec::new())
            .await?;
        if reply.code != "ok" {
            return match rejection_or_bug(&reply) {
                EngineError::Rejected(Rejection::NotFound) => Ok(None),
                e => Err(e),
            };
        }
        let now: i64 = reply.fields[1].parse().context("get_hold reply")?;
        Ok(Some(replies::hold(id, &reply.fields[0], Some(now))?))
    }

    /// Expires up to `batch` due holds; returns how many it expired.
    pub async fn expire_due(&self, batch: usize) -> Result<usize, EngineError> {
        let args = vec![self.keys.base().to_owned(), batch.to_string()];
        let reply = self
            .write_script(&self.scripts.expire, self.keys.expiry(), args)
            .await?;
        let expired: usize = reply.code.parse().context("expire reply")?;
        metrics::counter!(m::RESERVATIONS_EXPIRED).increment(expired as u64);
        Ok(expired)
    }

    /// Creates or updates a SKU; returns it and the outbox entry written, if any.
    #[tracing::instrument(skip_all, fields(sku = %sku))]
    pub async fn put_sku(&self, sku: &Sku, req: &PutSkuRequest) -> Result<SkuPut, EngineError> {
        let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let setting = |s: Setting<String>| match s {
            Setting::Keep => String::new(),
            Setting::Clear => "-".to_owned(),
            Setting::Set(v) => v,
        };
        let pcl = match req.per_customer_limit {
            Setting::Set(n) => Setting::Set(n.to_string()),
            Setting::Clear => Setting::Clear,
            Setting::Keep => Setting::Keep,
        };
        let ssa = match req.sale_starts_at {
            Setting::Set(t) => Setting::Set(t.timestamp_millis().to_string()),
            Setting::Clear => Setting::Clear,
            Setting::Keep => Setting::Keep,
        };
        let args = vec![
            self.keys.base().to_owned(),
            sku.to_string(),
            opt(req.on_hand),
            opt(req.backorder_limit),
            setting(pcl),
            setting(ssa),
        ];
        let reply = self
            .write_script(&self.scripts.put_sku, self.keys.avail(), args)
            .await?;
        let f = &reply.fields;
        match reply.code.as_str() {
            "created" | "updated" => Ok(SkuPut {
                view: sku_view(sku, &f[0], &f[1], &f[2], &f[3], &f[4])?,
                created: reply.code == "created",
                outbox: f[5].parse().ok(),
            }),
            "insufficient" => Err(Rejection::BelowHeld {
                sku: sku.clone(),
                requested: f[0].parse().context("put_sku reply")?,
                held: f[1].parse().context("put_sku reply")?,
            }
            .into()),
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    /// Changes a SKU's on_hand by `delta`, once per adjustment id.
    #[tracing::instrument(skip_all, fields(sku = %sku))]
    pub async fn adjust(
        &self,
        sku: &Sku,
        req: &AdjustmentRequest,
    ) -> Result<Adjusted, EngineError> {
        let args = vec![
            self.keys.base().to_owned(),
            sku.to_string(),
            req.adjustment_id.clone(),
            req.delta.to_string(),
            req.reason.clone().unwrap_or_default(),
        ];
        let reply = self
            .write_script(&self.scripts.adjust, self.keys.avail(), args)
            .await?;
        let f = &reply.fields;
        match reply.code.as_str() {
            "ok" => Ok(Adjusted::Applied(
                sku_view(sku, &f[0], &f[1], &f[2], &f[3], &f[4])?,
                f[5].parse().map_err(|m: String| anyhow!(m))?,
            )),
            "repeat" => Ok(Adjusted::Before(
                Sku::parse(&f[0]).map_err(|m| anyhow!(m))?,
                f[1].parse().context("adjust reply")?,
            )),
            "not_found" => Err(Rejection::SkuNotFound.into()),
            "insufficient" => {
                let on_hand: i64 = f[0].parse().context("adjust reply")?;
                let held: i64 = f[1].parse().context("adjust reply")?;
                // Units asked to take out, against units that may be taken.
                Err(Rejection::Insufficient(vec![Shortage {
                    sku: sku.clone(),
                    requested: -req.delta,
                    available: (on_hand - held).max(0),
                }])
                .into())
            }
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    /// Puts returned units back into on_hand, once per return id; the
    /// outbox entry when this call did it.
    pub async fn restock(
        &self,
        return_id: &str,
        order_id: &OrderId,
        lines: &[(Sku, i64)],
    ) -> Result<Option<StreamId>, EngineError> {
        let args = vec![
            self.keys.base().to_owned(),
            return_id.to_owned(),
            order_id.to_string(),
            pairs(lines),
        ];
        let reply = self
            .write_script(
                &self.scripts.restock,
                self.keys.return_mark(return_id),
                args,
            )
            .await?;
        match reply.code.as_str() {
            "ok" => Ok(Some(
                reply.fields[0].parse().map_err(|m: String| anyhow!(m))?,
            )),
            "repeat" => Ok(None),
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    /// One SKU's live view, `None` if it was never set up. Its four fields
    /// are read in one MULTI, so the view is of one instant.
    pub async fn sku(&self, sku: &Sku) -> Result<Option<SkuView>, EngineError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for key in [
            self.keys.avail(),
            self.keys.on_hand(),
            self.keys.backorder(),
            self.keys.rules(),
        ] {
            pipe.cmd("HGET").arg(key).arg(sku.as_str());
        }
        let (avail, on_hand, bo, rules): (Option<i64>, Option<i64>, Option<i64>, Option<String>) =
            self.run(|mut conn| async move { pipe.query_async(&mut conn).await })
                .await?;
        let Some(avail) = avail else {
            return Ok(None);
        };
        let (on_hand, bo) = (on_hand.unwrap_or(0), bo.unwrap_or(0));
        let rules = rules.unwrap_or_default();
        let (pcl, ssa) = rules.split_once(' ').unwrap_or(("-", "-"));
        let setting = |v: &str| -> String {
            if v == "-" {
                String::new()
            } else {
                v.to_owned()
            }
        };
        Ok(Some(sku_view(
            sku,
            &on_hand.to_string(),
            &(on_hand + bo - avail).to_string(),
            &bo.to_string(),
            &setting(pcl),
            &setting(ssa),
        )?))
    }

    /// `available` of each SKU in one command; `None` for unknown SKUs.
    pub async fn availability(&self, skus: &[Sku]) -> Result<Vec<Option<i64>>, EngineError> {
        let key = self.keys.avail();
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows: Vec<Option<i64>> = self
            .run(|mut conn| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg(&names)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(rows.into_iter().map(|a| a.map(|a| a.max(0))).collect())
    }

    /// A committed order still known to Redis (through its hold).
    pub async fn order(&self, order_id: &OrderId) -> Result<Option<Order>, EngineError> {
        let key = self.keys.order(order_id);
        let hold_id: Option<String> = self
            .run(|mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        let Some(id) = hold_id.as_deref().and_then(ReservationId::parse) else {
            return Ok(None);
        };
        match self.hold(&id).await? {
            Some(hold) if hold.order_id.as_ref() == Some(order_id) => {
                Ok(Some(replies::order_of(&hold)?))
            }
            _ => Ok(None),
        }
    }

    /// Outbox entries after `after`, oldest first, at most `count`.
    pub async fn outbox_after(
        &self,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, EngineError> {
        let key = self.keys.outbox();
        let raw: Vec<(String, HashMap<String, String>)> = self
            .run(|mut conn| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        raw.iter()
            .map(|(id, fields)| replies::outbox_entry(id, fields).map_err(EngineError::Internal))
            .collect()
    }

    /// One outbox entry by id.
    pub async fn outbox_entry(&self, id: StreamId) -> Result<Option<OutboxEntry>, EngineError> {
        let key = self.keys.outbox();
        let raw: Vec<(String, HashMap<String, String>)> = self
            .run(|mut conn| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(id.to_string())
                    .arg(id.to_string())
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        raw.first()
            .map(|(id, fields)| replies::outbox_entry(id, fields).map_err(EngineError::Internal))
            .transpose()
    }

    /// Drops outbox entries older than `min` (they are in Postgres).
    pub async fn trim_outbox(&self, min: StreamId) -> Result<(), EngineError> {
        let key = self.keys.outbox();
        self.run(|mut conn| async move {
            redis::cmd("XTRIM")
                .arg(key)
                .arg("MINID")
                .arg(min.to_string())
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
    }

    /// The idempotency store on the same Redis.
    pub fn idempotency(&self) -> IdempotencyStore {
        IdempotencyStore::new(self.clone())
    }
}

/// Lines as the scripts take them: their number, the SKUs, then the
/// quantities, each its own argument (no parsing in Lua).
fn push_lines(args: &mut Vec<String>, lines: &[(Sku, i64)]) {
    args.reserve(1 + 2 * lines.len());
    args.push(lines.len().to_string());
    args.extend(lines.iter().map(|(sku, _)| sku.to_string()));
    args.extend(lines.iter().map(|(_, qty)| qty.to_string()));
}

/// As `push_lines`, with the SKUs and the quantities also joined by spaces
/// after the count: the hold record's lines, stored as they come.
fn push_lines_with_record(args: &mut Vec<String>, lines: &[(Sku, i64)]) {
    push_lines(args, lines);
    let at = args.len() - 2 * lines.len();
    let skus = args[at..at + lines.len()].join(" ");
    let qtys = args[at + lines.len()..].join(" ");
    args.splice(at..at, [skus, qtys]);
}

/// "sku qty sku qty …" as the restock script takes lines.
fn pairs(lines: &[(Sku, i64)]) -> String {
    let mut out = String::with_capacity(lines.len() * 16);
    for (sku, qty) in lines {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(sku.as_str());
        out.push(' ');
        out.push_str(&qty.to_string());
    }
    out
}

fn rejection_or_bug(reply: &Reply) -> EngineError {
    match replies::rejection(reply) {
        Ok(Some(r)) => {
            if matches!(r, Rejection::Insufficient(_)) {
                metrics::counter!(m::INSUFFICIENT_STOCK).increment(1);
            }
            r.into()
        }
        Ok(None) => EngineError::Internal(anyhow!("unexpected script reply {reply:?}")),
        Err(e) => EngineError::Internal(e),
    }
}

fn hold_from(id: &ReservationId, reply: &Reply) -> Result<Hold, EngineError> {
    if reply.code != "ok" {
        return Err(rejection_or_bug(reply));
    }
    let record = reply.fields.first().context("hold reply without record")?;
    Ok(replies::hold(id, record, None)?)
}

fn sku_view(
    sku: &Sku,
    on_hand: &str,
    held: &str,
    bo: &str,
    pcl: &str,
    ssa: &str,
) -> Result<SkuView, EngineError> {
    let num = |s: &str| -> anyhow::Result<i64> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse()
                .with_context(|| format!("bad counter {s:?} for SKU {sku}"))
        }
    };
    Ok(SkuView {
        sku: sku.clone(),
        on_hand: num(on_hand)?,
        held: num(held)?,
        backorder_limit: num(bo)?,
        per_customer_limit: if pcl.is_empty() {
            None
        } else {
            Some(num(pcl)?)
        },
        sale_starts_at: if ssa.is_empty() {
            None
        } else {
            Some(replies::time(ssa)?)
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_lines_come_as_count_record_text_skus_then_quantities() {
        let lines = vec![
            (Sku::parse("A").unwrap(), 2),
            (Sku::parse("B-1").unwrap(), 10),
        ];
        let mut args = vec!["base".to_owned()];
        push_lines_with_record(&mut args, &lines);
        assert_eq!(args, ["base", "2", "A B-1", "2 10", "A", "B-1", "2", "10"]);
    }
}
