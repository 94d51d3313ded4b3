//! The stock engine: live counts, holds and the outbox in Redis. Every change
//! of live counts is one Lua script call (`lua/`), so it is all-or-nothing
//! and atomic with respect to every other change.

mod buckets;
mod cluster;
mod connections;
mod events;
mod holds;
mod idempotency;
mod keys;
mod outbox;
mod overview;
mod recovery;
mod replies;
mod scripts;
mod skus;

pub use buckets::{Durable, Spread, StalledTransfer};
pub use events::{event_of, EventsExtent};
pub use idempotency::{Begun, Claim, IdempotencyStore, StoredResponse, RENEW_EVERY};
pub use keys::{Keys, PartKeys};
pub use overview::{HoldOnSku, HoldsOnSku, LiveStatus, TALLY_MINUTES};
pub use recovery::{HoldIndex, LeaseOp, ServerState};
pub use scripts::script_source;

use crate::configuration::RedisSettings;
use crate::domain::{
    Hold, Order, OutboxEntry, Partition, Partitions, Rejection, ReservationId, Shortage, Sku,
    SkuView, StreamId,
};
use crate::metrics as m;
use anyhow::{anyhow, Context};
use connections::{Connection, Connections};
use recovery::Watch;
use replies::Reply;
use scripts::Scripts;
use std::collections::BTreeMap;
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
            Failure::Refused | Failure::Moving | Failure::Unanswered => {
                EngineError::Unavailable(e.into())
            }
            Failure::Other => EngineError::Internal(e.into()),
        }
    }
}

/// How a Redis call failed, as far as its effect goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Never ran: no connection, or Redis refused it (loading, try again).
    Refused,
    /// Never ran: its partition's slot is being moved to another cluster
    /// node (the scripts' fence, see lua/common.lua, or a MULTI aborted by
    /// a redirect). The server is fine; the call can be made again shortly.
    Moving,
    /// Sent, perhaps, but not answered: timed out, or the connection broke.
    Unanswered,
    /// Answered with an error: a bug or corrupt data.
    Other,
}

impl Failure {
    fn of(e: &redis::RedisError) -> Failure {
        use redis::ErrorKind as K;
        if e.kind() == K::ExecAbortError
            || e.to_string()
                .contains("Script attempted to access a non local key")
        {
            return Failure::Moving;
        }
        // Refusals: loading, and a cluster that is failing over or moving
        // slots (the node did not run the command).
        if e.is_connection_refusal()
            || matches!(
                e.kind(),
                K::BusyLoadingError
                    | K::TryAgain
                    | K::ClusterDown
                    | K::MasterDown
                    | K::Moved
                    | K::Ask
                    | K::ReadOnly
                    | K::ClusterConnectionNotFound
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

/// Where an outbox entry is: its partition's stream, and its id there.
pub type EntryRef = (Partition, StreamId);

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
    /// Whether this call made the sale (false: it was made before).
    pub fresh: bool,
    /// The outbox entries this call wrote (one per partition of the basket
    /// it sold in; none when the sale was made before).
    pub outbox: Vec<OutboxEntry>,
}

/// A SKU after `put_sku`.
#[derive(Debug, Clone)]
pub struct SkuPut {
    /// The SKU's live view.
    pub view: SkuView,
    /// Whether this call created it.
    pub created: bool,
    /// The outbox entry of the change, if anything changed.
    pub outbox: Option<EntryRef>,
}

/// The outcome of an adjustment in Redis.
#[derive(Debug, Clone)]
pub enum Adjusted {
    /// Applied now; the SKU after it and the outbox entry.
    Applied(SkuView, EntryRef),
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
    /// Makes an outbox entry durable in the ledger (set by the service):
    /// a transfer gives its units only once its take is recorded.
    durable: Arc<std::sync::OnceLock<Durable>>,
    /// SKUs spread over several partitions (hot-SKU buckets), by name, with
    /// when this instance learnt it.
    spread: Arc<std::sync::RwLock<std::collections::HashMap<String, (Spread, std::time::Instant)>>>,
    /// Whether its scripts write events.
    events: bool,
}

impl Engine {
    /// This engine, with its scripts writing events (the default) or not
    /// (`events.enabled = false`).
    pub fn with_events(mut self, on: bool) -> Self {
        self.scripts = Arc::new(Scripts::load(on));
        self.events = on;
        self
    }

    /// Whether its scripts write events.
    pub fn events_on(&self) -> bool {
        self.events
    }

    /// An engine on the Redis (or Redis Cluster) of `settings`; connects
    /// lazily.
    pub fn new(settings: &RedisSettings) -> anyhow::Result<Self> {
        let call_timeout = Duration::from_millis(settings.call_timeout_ms);
        let conns = Connections::new(
            &settings.url,
            settings.cluster,
            settings.connections,
            call_timeout,
        )
        .context("parsing redis.url")?;
        let partitions = Partitions::new(settings.partitions);
        Ok(Engine {
            conns: Arc::new(conns),
            keys: Keys::new(&settings.key_prefix, partitions),
            scripts: Arc::new(Scripts::load(true)),
            watch: Arc::new(Watch::new(partitions)),
            call_timeout,
            spread: Arc::default(),
            durable: Arc::default(),
            events: true,
        })
    }

    /// The key layout in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The partitions of the live state.
    pub fn partitions(&self) -> Partitions {
        self.keys.partitions()
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
            (Failure::Moving, e) => EngineError::Unavailable(e.context(MOVING)),
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

    /// Runs a script that may write, in partition `p`: after a connection
    /// failure the partition's server is checked first (`check_server`),
    /// and an unanswered call is an unknown outcome.
    async fn write_script(
        &self,
        p: Partition,
        script: &redis::Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Reply, EngineError> {
        self.check_server(p).await?;
        self.invoke(p, Effect::Writes, script, key, args).await
    }

    /// Runs a script that only reads, or one of a rebuild (which checks
    /// its lease itself).
    async fn script(
        &self,
        p: Partition,
        script: &redis::Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Reply, EngineError> {
        self.invoke(p, Effect::Reads, script, key, args).await
    }

    async fn invoke(
        &self,
        p: Partition,
        effect: Effect,
        script: &redis::Script,
        key: String,
        args: Vec<String>,
    ) -> Result<Reply, EngineError> {
        // A slot move stops a script before it touched anything: wait for
        // the move to end (a slot of stockhold's moves in well under a
        // second) rather than refuse the request.
        let mut waited = Duration::ZERO;
        let reply: Reply = loop {
            let mut invocation = script.key(&key);
            for arg in &args {
                invocation.arg(arg);
            }
            match self
                .call(effect, |mut conn| async move {
                    invocation.invoke_async(&mut conn).await
                })
                .await
            {
                Err(e) if is_moving(&e) && waited < MOVE_WAIT => {
                    tokio::time::sleep(MOVE_STEP).await;
                    waited += MOVE_STEP;
                }
                reply => break reply?,
            }
        };
        if reply.code == "not_ready" {
            self.watch.want_rebuild();
            return Err(EngineError::Unavailable(anyhow!(
                "partition {p} of Redis is being rebuilt from the ledger"
            )));
        }
        Ok(reply)
    }

    /// Answers when Redis does.
    pub async fn ping(&self) -> Result<(), EngineError> {
        self.run(|mut conn| async move {
            let key = "ping";
            conn.on_master_of(key, &redis::cmd("PING")).await
        })
        .await
        .map(drop)
    }

    /// Lines grouped by partition, each group in basket order; the
    /// partitions in the fixed order multi-partition steps take.
    fn by_partition(&self, lines: &[(Sku, i64)]) -> BTreeMap<Partition, Vec<(Sku, i64)>> {
        let mut groups: BTreeMap<Partition, Vec<(Sku, i64)>> = BTreeMap::new();
        for line in lines {
            groups
                .entry(self.keys.of_sku(&line.0))
                .or_default()
                .push(line.clone());
        }
        groups
    }

    /// The idempotency store on the same Redis.
    pub fn idempotency(&self) -> IdempotencyStore {
        IdempotencyStore::new(self.clone())
    }
}

/// Context of a call refused because its slot is being moved.
const MOVING: &str = "the partition's slot is being moved to another Redis Cluster node";
/// How long a script call waits for a slot move, and in what steps.
const MOVE_WAIT: Duration = Duration::from_secs(2);
const MOVE_STEP: Duration = Duration::from_millis(20);

fn is_moving(e: &EngineError) -> bool {
    matches!(e, EngineError::Unavailable(e) if e.to_string() == MOVING)
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

/// A SKU's view from a script's reply fields: on_hand, held, bo, pcl, ssa,
/// its pools (`replies::pools`) and low-stock threshold ('' = none).
fn sku_view(sku: &Sku, f: [&str; 7]) -> Result<SkuView, EngineError> {
    let [on_hand, held, bo, pcl, ssa, pools, low] = f;
    let (safety_stock, allocations) = replies::pools(pools)?;
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
        buckets: 1,
        safety_stock,
        allocations,
        low_stock: if low.is_empty() {
            None
        } else {
            Some(num(low)?)
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
