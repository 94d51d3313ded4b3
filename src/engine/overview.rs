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

/// A live hold of some units of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldOnSku {
    pub id: ReservationId,
    /// Its units of the SKU (a staged change counts with the larger of its
    /// old and new quantities).
    pub qty: i64,
    /// held, or committing (a commit under way).
    pub status: String,
    pub customer_id: Option<String>,
    pub channel: Option<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
}

/// The live holds on a SKU, soonest to expire first.
#[derive(Debug, Clone, Default)]
pub struct HoldsOnSku {
    pub holds: Vec<HoldOnSku>,
    /// Hold records read.
    pub scanned: usize,
    /// False when there were more live holds than the scan reads.
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

    /// The id of partition `p`'s oldest outbox entry after `watermark` (the
    /// first one the ledger does not have yet), if any.
    pub async fn first_outbox_after(
        &self,
        p: Partition,
        watermark: StreamId,
    ) -> Result<Option<StreamId>, EngineError> {
        let entries = self
            .entries_after(self.keys.part(p).outbox(), watermark, 1)
            .await?;
        Ok(entries.first().and_then(|(id, _)| id.parse().ok()))
    }

    /// Counts one commit answered 202 in minute `minute` (Unix time / 60).
    pub async fn tally_not_persisted(&self, minute: i64) -> Result<(), EngineError> {
        let key = self.tally_key();
        let script = &self.scripts.tally;
        let _: i64 = self
            .call(super::Effect::Writes, |mut conn| async move {
                script
                    .key(key)
                    .arg(minute)
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
        let key = self.tally_key();
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

    fn tally_key(&self) -> String {
        format!("{}tally:not_persisted", self.keys.part(Partition(0)).base())
    }

    /// The live holds with units of `sku`, reading at most `most` hold
    /// records (those soonest to expire first) over every partition.
    pub async fn holds_on(&self, sku: &Sku, most: usize) -> Result<HoldsOnSku, EngineError> {
        let mut found: HashMap<ReservationId, HoldOnSku> = HashMap::new();
        let mut out = HoldsOnSku {
            complete: true,
            ..Default::default()
        };
        for p in self.partitions().all() {
            let keys = self.keys.part(p);
            let left = most.saturating_sub(out.scanned);
            let mut ids = self.first_of(keys.committing(), left).await?;
            ids.extend(
                self.first_of(keys.expiry(), left - ids.len().min(left))
                    .await?,
            );
            if ids.len() >= left {
                out.complete = false;
            }
            ids.truncate(left);
            out.scanned += ids.len();
            for chunk in ids.chunks(HOLDS_PAGE) {
                let hold_keys: Vec<String> = chunk.iter().map(|id| keys.hold(id)).collect();
                let records: Vec<Option<String>> = self
                    .run(|mut conn| async move {
                        redis::cmd("MGET")
                            .arg(hold_keys)
                            .query_async(&mut conn)
                            .await
                    })
                    .await?;
                for (id, record) in chunk.iter().zip(records) {
                    let Some(record) = record else { continue };
                    let record = Record::parse(&record).map_err(EngineError::Internal)?;
                    if record.status != "held" && record.status != "committing" {
                        continue;
                    }
                    let qty: i64 = record
                        .lines
                        .iter()
                        .filter(|(s, _)| s == sku)
                        .map(|(_, q)| q)
                        .sum();
                    if qty == 0 {
                        continue;
                    }
                    let hold = found.entry(id.clone()).or_insert_with(|| HoldOnSku {
                        id: id.clone(),
                        qty: 0,
                        status: record.status.clone(),
                        customer_id: record.customer_id.clone(),
                        channel: record.channel.clone(),
                        created_ms: record.created_ms,
                        expires_ms: record.expires_ms,
                    });
                    hold.qty += qty;
                }
            }
        }
        out.holds = found.into_values().collect();
        out.holds
            .sort_by(|a, b| (a.expires_ms, a.id.as_str()).cmp(&(b.expires_ms, b.id.as_str())));
        Ok(out)
    }

    /// The first `n` members of sorted set `key` (lowest scores first).
    async fn first_of(&self, key: String, n: usize) -> Result<Vec<ReservationId>, EngineError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.zset_range(key, n as i64 - 1).await
    }
}
