//! What the engine knows about the Redis server behind it, and the calls a
//! rebuild makes: the ready marker (which Redis run was rebuilt), the rebuild
//! lease, settling holds the ledger sold, customer totals and the batch
//! comparison of live counts with the ledger.
//!
//! A Redis that restarts may come back without its last writes (an AOF
//! written every second), so the marker holds the run id of the server that
//! was rebuilt: a marker of another run means "restarted", and the instance
//! that notices deletes it, which makes every write script refuse until the
//! rebuild is done. Calls notice it on their own too: after any connection
//! failure the next write checks the server before it runs (see
//! `Engine::check_server`), and wakes the rebuild guard.

use super::replies::Record;
use super::{rejection_or_bug, Engine, EngineError};
use crate::domain::{
    split_pool_account, Drift, Order, Partition, Partitions, ReconcileMode, ReservationId, Sku,
    StreamId,
};
use anyhow::{anyhow, Context};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Hold records read per round trip by `hold_index`.
const INDEX_PAGE: usize = 1000;

/// What a partition's live holds held of each SKU when a watch began, as
/// read outside any script (see `Engine::hold_index`).
pub struct HoldIndex {
    /// The watch's token: a batch refuses if the watch lapsed meanwhile.
    pub token: String,
    held: HashMap<String, i64>,
    holds: usize,
}

impl HoldIndex {
    /// Units of `sku` (or of an allocation's account `sku@channel`) the
    /// live holds held when the watch began: a SKU's own are those held
    /// from its shared pool.
    pub fn held(&self, sku: &str) -> i64 {
        self.held.get(sku).copied().unwrap_or(0)
    }

    /// How many live holds (and parts) there were.
    pub fn holds(&self) -> usize {
        self.holds
    }
}

/// Whether Redis holds the state rebuilt from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerState {
    /// Rebuilt, and not restarted since.
    Ready,
    /// Rebuilt on an earlier run of the server (`marker`): it restarted, and
    /// may have lost its last writes.
    Restarted {
        /// The marker left by that rebuild.
        marker: String,
    },
    /// Not rebuilt (new, lost its data, or a rebuild is under way) on the
    /// server run `run_id`.
    NotRebuilt {
        /// The server's run id now.
        run_id: String,
    },
}

/// What calls learn about the servers between the rebuild guard's looks.
#[derive(Debug)]
pub(super) struct Watch {
    /// Per partition: a call failed on its connection (or none has been
    /// checked yet), so the partition's server may have restarted or failed
    /// over, and the next write there checks it first.
    suspect: Box<[AtomicBool]>,
    /// Wakes the rebuild guard when a call finds Redis not rebuilt.
    rebuild_wanted: Arc<Notify>,
}

impl Watch {
    pub(super) fn new(partitions: Partitions) -> Watch {
        Watch {
            suspect: partitions.all().map(|_| AtomicBool::new(true)).collect(),
            rebuild_wanted: Arc::default(),
        }
    }

    /// Notes a failed call: a connection may now lead to another run of a
    /// server (which one is not known, so every partition is checked).
    pub(super) fn connection_failed(&self) {
        for s in self.suspect.iter() {
            s.store(true, Ordering::Relaxed);
        }
    }

    /// Wakes the rebuild guard.
    pub(super) fn want_rebuild(&self) {
        self.rebuild_wanted.notify_one();
    }
}

/// The operations on a key held by its owner (`lua/lease.lua`).
#[derive(Debug, Clone, Copy)]
pub enum LeaseOp {
    /// Take it if free or ours.
    Acquire,
    /// Restart its time if ours.
    Renew,
    /// Give it up if ours.
    Release,
}

impl LeaseOp {
    fn as_str(self) -> &'static str {
        match self {
            LeaseOp::Acquire => "acquire",
            LeaseOp::Renew => "renew",
            LeaseOp::Release => "release",
        }
    }
}

impl Engine {
    /// Wakes whoever rebuilds (the rebuild guard) when a call finds Redis
    /// restarted or not rebuilt.
    pub fn rebuild_wanted(&self) -> Arc<Notify> {
        self.watch.rebuild_wanted.clone()
    }

    /// Before a write: once a connection failed, checks that the server is
    /// still the one that was rebuilt, so no write lands on a Redis that
    /// came back without its last moments before a rebuild looked at it.
    pub(super) async fn check_server(&self, p: Partition) -> Result<(), EngineError> {
        let suspect = &self.watch.suspect[p.0 as usize];
        if !suspect.load(Ordering::Relaxed) {
            return Ok(());
        }
        let why = match self.server_state(p).await? {
            ServerState::Ready => {
                suspect.store(false, Ordering::Relaxed);
                return Ok(());
            }
            ServerState::Restarted { marker } => {
                self.forget_rebuild(p, &marker).await?;
                "Redis restarted (or failed over) and is being checked against the ledger"
            }
            ServerState::NotRebuilt { .. } => "Redis is being rebuilt from the ledger",
        };
        self.watch.want_rebuild();
        Err(EngineError::Unavailable(anyhow!(why)))
    }

    /// Records the partition count in Redis on first use and compares it
    /// after: live state laid out for one count cannot be read with another
    /// (SKUs would be looked for in the wrong partitions). The outer error
    /// is Redis's; the inner one says what does not match.
    pub async fn check_layout(&self) -> Result<Result<(), String>, EngineError> {
        let key = self.keys.layout();
        let want = format!("partitions={}", self.partitions().count());
        let value = want.clone();
        let found: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("NX")
                    .arg("GET")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(match found {
            Some(found) if found != want => Err(format!(
                "Redis holds live state laid out as {found}, but redis.partitions is {}: \
                 change the partition count only by the offline step in the README",
                self.partitions().count()
            )),
            _ => Ok(()),
        })
    }

    /// Partition `p`'s ready marker, and the run id of the Redis server
    /// serving it (on a cluster: the master of its slot).
    pub async fn server_state(&self, p: Partition) -> Result<ServerState, EngineError> {
        let key = self.keys.part(p).ready();
        let (info, marker): (String, Option<String>) = self
            .run(|mut conn| async move {
                let info = conn
                    .on_master_of(&key, redis::cmd("INFO").arg("server"))
                    .await?;
                let marker = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                Ok((redis::FromRedisValue::from_redis_value(&info)?, marker))
            })
            .await?;
        let run_id = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|s| s.trim().to_owned())
            .ok_or_else(|| EngineError::Internal(anyhow!("INFO server without run_id")))?;
        Ok(match marker {
            Some(m) if m == run_id => ServerState::Ready,
            Some(marker) => ServerState::Restarted { marker },
            None => ServerState::NotRebuilt { run_id },
        })
    }

    /// Deletes the ready marker `marker` of an earlier server run (if it is
    /// still that one): write scripts refuse until the next rebuild.
    pub async fn forget_rebuild(&self, p: Partition, marker: &str) -> Result<bool, EngineError> {
        let key = self.keys.part(p).ready();
        self.lease_call(key, LeaseOp::Release, marker, Duration::ZERO)
            .await
    }

    /// Takes, renews or releases the rebuild lease for `owner`; whether it
    /// is (or was) `owner`'s.
    pub async fn rebuild_lease(
        &self,
        p: Partition,
        op: LeaseOp,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, EngineError> {
        let key = self.keys.part(p).rebuild_lock();
        self.lease_call(key, op, owner, ttl).await
    }

    pub(super) async fn lease_call(
        &self,
        key: String,
        op: LeaseOp,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, EngineError> {
        let mut invocation = self.scripts.lease.key(key);
        invocation
            .arg(op.as_str())
            .arg(owner)
            .arg(ttl.as_millis() as u64);
        let done: i64 = self
            .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(done == 1)
    }

    /// Ends a rebuild by `owner` of the server run `run_id`: write scripts
    /// run again and the lease is released. False if `owner` lost the lease.
    pub async fn mark_ready(
        &self,
        p: Partition,
        owner: &str,
        run_id: &str,
        lost_at: Option<i64>,
    ) -> Result<bool, EngineError> {
        let keys = self.keys.part(p);
        let args = vec![
            keys.base().to_owned(),
            owner.to_owned(),
            run_id.to_owned(),
            lost_at.map(|ms| ms.to_string()).unwrap_or_default(),
        ];
        let reply = self
            .script(p, &self.scripts.mark_ready, keys.ready(), args)
            .await?;
        Ok(reply.code == "1")
    }

    /// Compares, and with `mode` other than check sets, the live counts of
    /// `rows` (sku, expected on_hand counting outbox entries up to `after`,
    /// and the ledger's settings) in one atomic step. A rebuild passes the
    /// lease's `owner`, and nothing is written if it lost the lease.
    ///
    /// `index` is what the partition's live holds held when its watch
    /// began; the batch adds the change of every hold changed since, and
    /// says how many those were (a caller starts a new watch when they
    /// grow many). `Ok(None)`: the watch was abandoned; read them again.
    pub async fn reconcile_batch(
        &self,
        p: Partition,
        mode: ReconcileMode,
        after: StreamId,
        owner: &str,
        index: &HoldIndex,
        rows: &[(&crate::ledger::SkuRecord, i64)],
    ) -> Result<Option<(Vec<Drift>, usize)>, EngineError> {
        let mut args = Vec::with_capacity(6 + rows.len() * 8);
        let keys = self.keys.part(p);
        args.extend([
            keys.base().to_owned(),
            mode.as_str().to_owned(),
            after.to_string(),
            owner.to_owned(),
            index.token.clone(),
            rows.len().to_string(),
        ]);
        for (record, expected) in rows {
            args.push(record.sku.clone());
            args.push(expected.to_string());
            args.push(index.held(&record.sku).to_string());
            args.push(record.backorder_limit.to_string());
            args.push(
                record
                    .per_customer_limit
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            );
            args.push(
                record
                    .sale_starts_at
                    .map(|t| t.timestamp_millis().to_string())
                    .unwrap_or_default(),
            );
            // Bucket 0 keeps how the SKU is spread; '-': another bucket.
            args.push(match (record.bucket, record.bucket_span) {
                (0, 1) => String::new(),
                (0, span) => format!("{} {span}", record.buckets),
                _ => "-".to_owned(),
            });
            // Its pools, as lua/common.lua keeps them ("safety chan ...").
            args.push(
                if record.safety_stock > 0 || !record.allocations.is_empty() {
                    std::iter::once(record.safety_stock.to_string())
                        .chain(record.allocations.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    String::new()
                },
            );
            args.push(record.low_stock.map(|n| n.to_string()).unwrap_or_default());
        }
        let reply = self
            .script(p, &self.scripts.reconcile, keys.expiry(), args)
            .await?;
        if reply.code == "lease_lost" {
            return Err(lease_lost());
        }
        if reply.code == "rewatch" {
            return Ok(None);
        }
        let changed: usize = reply
            .fields
            .first()
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("reconcile reply {:?}", reply.fields))?;
        let drifts = reply.fields[1..]
            .chunks_exact(5)
            .map(|c| {
                let num = |s: &str| {
                    s.parse::<i64>()
                        .with_context(|| format!("reconcile reply {c:?}"))
                };
                let (sku, pool) = match split_pool_account(&c[0]) {
                    Some((sku, channel)) => (sku, Some(channel.to_owned())),
                    None => (c[0].as_str(), None),
                };
                Ok(Drift {
                    sku: Sku::parse(sku).map_err(|m| anyhow!(m))?,
                    pool,
                    expected_on_hand: num(&c[1])?,
                    expected_held: num(&c[2])?,
                    actual_on_hand: if c[3].is_empty() {
                        None
                    } else {
                        Some(num(&c[3])?)
                    },
                    actual_held: num(&c[4])?,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some((drifts, changed)))
    }

    /// Restores per-customer totals while `owner` rebuilds Redis: the old
    /// totals are deleted, then bought (from the ledger) and held (from the
    /// live holds) are added up again.
    pub async fn set_customer_counts(
        &self,
        p: Partition,
        owner: &str,
        bought: &[crate::ledger::Bought],
    ) -> Result<(), EngineError> {
        // Write scripts refuse to run until the partition is ready again, so
        // these keys change under no one's feet. On a cluster SCAN goes to
        // the partition's master.
        let pattern = format!("{}cust:*", self.keys.part(p).base());
        let slot_key = self.keys.part(p).ready();
        let mut cursor: u64 = 0;
        loop {
            let (pattern, slot_key) = (pattern.clone(), slot_key.clone());
            let (next, keys): (u64, Vec<String>) = self
                .run(|mut conn| async move {
                    let mut scan = redis::cmd("SCAN");
                    scan.arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(5000);
                    let found = conn.on_master_of(&slot_key, &scan).await?;
                    redis::FromRedisValue::from_redis_value(&found)
                })
                .await?;
            if !keys.is_empty() {
                self.customer_counts(p, owner, "clear", keys).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        for chunk in bought.chunks(5000) {
            let mut args = Vec::with_capacity(chunk.len() * 3);
            for b in chunk {
                args.extend([b.customer_id.clone(), b.sku.clone(), b.qty.to_string()]);
            }
            self.customer_counts(p, owner, "bought", args).await?;
        }
        self.customer_counts(p, owner, "held", Vec::new()).await
    }

    async fn customer_counts(
        &self,
        p: Partition,
        owner: &str,
        op: &str,
        rest: Vec<String>,
    ) -> Result<(), EngineError> {
        let keys = self.keys.part(p);
        let mut args = vec![keys.base().to_owned(), owner.to_owned(), op.to_owned()];
        args.extend(rest);
        let reply = self
            .script(p, &self.scripts.set_customer_counts, keys.expiry(), args)
            .await?;
        if reply.code == "lease_lost" {
            return Err(lease_lost());
        }
        Ok(())
    }

    /// Reads what partition `p`'s live holds hold of each SKU, outside any
    /// script, as of the moment a watch begins (watch.lua): from then on
    /// every script that changes a hold keeps its record of that moment
    /// (`note_change` in lua/common.lua). The holds are read after the
    /// watch began, so a hold changed before it was read is among those
    /// kept, and counts as kept. A reconciliation's batch then counts, in
    /// one script, these totals plus the change of each hold noted since,
    /// instead of reading every live hold of the partition per batch.
    pub async fn hold_index(&self, p: Partition) -> Result<HoldIndex, EngineError> {
        let keys = self.keys.part(p);
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.watch_op(p, "start", &token).await?;
        let mut records: HashMap<String, String> = HashMap::new();
        let ids = self.live_holds(p).await?;
        for chunk in ids.chunks(INDEX_PAGE) {
            let hold_keys: Vec<String> = chunk.iter().map(|id| keys.hold(id)).collect();
            let found = self.strings(&hold_keys).await?;
            for (key, record) in hold_keys.into_iter().zip(found) {
                if let Some(record) = record {
                    records.insert(key, record);
                }
            }
        }
        // Holds changed since the watch began, as they were then ('' = none).
        let touched_key = format!("{}touched:{token}", keys.base());
        let touched: HashMap<String, String> = self
            .run(|mut conn| async move {
                redis::cmd("HGETALL")
                    .arg(touched_key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        for (key, before) in touched {
            if before.is_empty() {
                records.remove(&key);
            } else {
                records.insert(key, before);
            }
        }
        let mut held: HashMap<String, i64> = HashMap::new();
        let mut holds = 0;
        for record in records.values() {
            let record = Record::parse(record)?;
            if record.status != "held" && record.status != "committing" {
                continue;
            }
            holds += 1;
            for (account, qty) in record.held_by_account() {
                *held.entry(account).or_default() += qty;
            }
        }
        Ok(HoldIndex { token, held, holds })
    }

    /// Ends the watch of `index` (its holds noted are dropped).
    pub async fn end_watch(&self, p: Partition, index: &HoldIndex) -> Result<(), EngineError> {
        self.watch_op(p, "end", &index.token).await
    }

    async fn watch_op(&self, p: Partition, op: &str, token: &str) -> Result<(), EngineError> {
        let keys = self.keys.part(p);
        self.script(
            p,
            &self.scripts.watch,
            format!("{}watches", keys.base()),
            vec![keys.base().to_owned(), op.to_owned(), token.to_owned()],
        )
        .await?;
        Ok(())
    }

    /// Ids of partition `p`'s live holds and parts (the reaper's queue, and
    /// the commits under way).
    pub async fn live_holds(&self, p: Partition) -> Result<Vec<ReservationId>, EngineError> {
        let mut ids = self.zset(self.keys.part(p).expiry()).await?;
        ids.extend(self.zset(self.keys.part(p).committing()).await?);
        Ok(ids)
    }

    async fn zset(&self, key: String) -> Result<Vec<ReservationId>, EngineError> {
        self.zset_range(key, -1).await
    }

    /// The hold ids of sorted set `key` from the lowest score to rank `stop`
    /// (`-1`: every one).
    pub(super) async fn zset_range(
        &self,
        key: String,
        stop: i64,
    ) -> Result<Vec<ReservationId>, EngineError> {
        let ids: Vec<String> = self
            .run(|mut conn| async move {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(stop)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(ids
            .iter()
            .filter_map(|id| ReservationId::parse(id))
            .collect())
    }

    /// The values of string keys `keys` (None where there is none).
    pub(super) async fn strings(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<String>>, EngineError> {
        let keys = keys.to_vec();
        self.run(
            |mut conn| async move { redis::cmd("MGET").arg(keys).query_async(&mut conn).await },
        )
        .await
    }

    /// Marks a held hold committed as `order` (whose sale the ledger has),
    /// while `owner` rebuilds Redis.
    pub async fn settle(
        &self,
        p: Partition,
        owner: &str,
        order: &Order,
    ) -> Result<bool, EngineError> {
        self.settle_as(p, owner, order, false).await
    }

    /// Sells a hold still held in a ready partition whose order reached the
    /// ledger after the partition's rebuild read it (settle.lua, 'late'):
    /// the rebuilt counts missed that sale.
    pub async fn settle_late(&self, p: Partition, order: &Order) -> Result<bool, EngineError> {
        self.settle_as(p, "", order, true).await
    }

    async fn settle_as(
        &self,
        p: Partition,
        owner: &str,
        order: &Order,
        late: bool,
    ) -> Result<bool, EngineError> {
        let id = &order.reservation_id;
        let keys = self.keys.part(p);
        let indexed = self.keys.order_partition(&order.order_id) == p;
        let here: Vec<String> = order
            .lines
            .iter()
            .filter(|l| self.keys.of_sku(&l.sku) == p)
            .map(|l| format!("{} {}", l.sku, l.qty))
            .collect();
        let args = vec![
            keys.base().to_owned(),
            id.to_string(),
            order.order_id.to_string(),
            order.committed_at.timestamp_millis().to_string(),
            owner.to_owned(),
            if indexed { "1" } else { "0" }.to_owned(),
            if late { "late" } else { "" }.to_owned(),
            here.join(" "),
        ];
        let reply = if late {
            self.write_script(p, &self.scripts.settle, keys.hold(id), args)
                .await?
        } else {
            self.script(p, &self.scripts.settle, keys.hold(id), args)
                .await?
        };
        match reply.code.as_str() {
            "1" => Ok(true),
            "0" => Ok(false),
            "lease_lost" => Err(lease_lost()),
            _ => Err(rejection_or_bug(&reply)),
        }
    }
}

fn lease_lost() -> EngineError {
    EngineError::Unavailable(anyhow!(
        "the rebuild lease ran out (another instance took over the rebuild)"
    ))
}
