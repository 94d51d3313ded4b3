//! The outbox drain: records outbox entries in the ledger in stream order,
//! partition by partition, moves each partition's watermark and
//! `skus.on_hand` with them, and trims what is safely persisted. Drains of
//! several instances take turns on each watermark row (see
//! `Ledger::advance`).

use super::Outcome;
use crate::domain::{OutboxEntry, Partition, StreamId};
use crate::service::Stock;
use futures_util::{stream, StreamExt, TryStreamExt};
use std::time::Duration;

/// A restocking return whose units are not back this long after it was
/// recorded was cut off by a crash; the drain finishes it.
const RESTOCK_GRACE: Duration = Duration::from_secs(30);

/// Below this many entries a batch is recorded in one transaction.
const PARALLEL_FROM: usize = 64;
/// Most entries one of the parallel transactions records. The step's last
/// transaction (`Ledger::advance`) updates every SKU the batch touched once,
/// so a batch much bigger than this is cheaper per entry.
const RECORD_CHUNK: usize = 250;

/// Partitions drained at once.
const PARTITIONS_AT_ONCE: usize = 4;

/// Persists the outbox in batches.
#[derive(Clone)]
pub struct Drain {
    stock: Stock,
    batch: usize,
    writers: usize,
    retention: Duration,
}

impl Drain {
    /// A drain taking up to `batch` entries a step, recording a big batch
    /// in `writers` transactions at once, and keeping persisted entries in
    /// the stream for `retention` (so a rebuild that read the watermark a
    /// moment ago still finds the entries after it).
    pub fn new(stock: Stock, batch: usize, writers: usize, retention: Duration) -> Self {
        Drain {
            stock,
            batch,
            writers: writers.max(1),
            retention,
        }
    }

    /// Applies the next batch after each partition's watermark. The flag
    /// says whether a batch was full.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let partitions = self.stock.engine.partitions();
        let steps: Vec<(usize, bool)> = stream::iter(partitions.all())
            .map(|p| self.drain_partition(p))
            .buffer_unordered(PARTITIONS_AT_ONCE)
            .try_collect()
            .await?;
        let lag: usize = steps.iter().map(|s| s.0).sum();
        metrics::gauge!(crate::metrics::OUTBOX_LAG).set(lag as f64);
        if lag == 0 {
            self.finish_cut_off_restocks().await?;
            return Ok((Outcome::Idle, false));
        }
        Ok((Outcome::Worked(lag), steps.iter().any(|s| s.1)))
    }

    /// One batch of partition `p`: entries read, and whether the batch was
    /// full (or another drain had the turn).
    async fn drain_partition(&self, p: Partition) -> anyhow::Result<(usize, bool)> {
        let (engine, ledger) = (&self.stock.engine, &self.stock.ledger);
        let watermark = ledger.watermark(p).await?;
        let entries = engine.outbox_after(p, watermark, self.batch).await?;
        let Some(last) = entries.last().map(|e| e.id) else {
            return Ok((0, false));
        };
        // A backlog (Postgres was away) is recorded by several transactions
        // at once, each on its own core; recording is idempotent, and the
        // step below then finds those entries recorded.
        let mut applied = 0;
        if entries.len() >= PARALLEL_FROM && self.writers > 1 {
            let chunk = entries.len().div_ceil(self.writers).min(RECORD_CHUNK);
            // Owned chunks: a future borrowing `entries` is not Send here.
            let chunks: Vec<Vec<OutboxEntry>> = entries.chunks(chunk).map(<[_]>::to_vec).collect();
            let recorded: Vec<usize> = stream::iter(chunks)
                .map(|c| {
                    let ledger = ledger.clone();
                    async move { ledger.record(&c).await }
                })
                .buffer_unordered(self.writers)
                .try_collect()
                .await?;
            applied = recorded.iter().sum();
        }
        let advanced = ledger.advance(p, watermark, &entries).await?;
        // What this drain recorded counts even when another instance's drain
        // moved the watermark meanwhile.
        applied += advanced.unwrap_or(0);
        metrics::counter!(crate::metrics::OUTBOX_DRAINED).increment(applied as u64);
        if advanced.is_none() {
            // Another instance's drain moved the watermark: its turn.
            return Ok((entries.len(), true));
        }
        if applied > 0 {
            tracing::info!(applied, partition = %p, watermark = %last,
                "outbox entries persisted by the drain");
        }
        let keep_from = StreamId {
            ms: last.ms - self.retention.as_millis() as i64,
            seq: 0,
        };
        if keep_from.ms > 0 {
            engine.trim_outbox(p, keep_from).await?;
        }
        Ok((entries.len(), entries.len() >= self.batch))
    }
}

impl Drain {
    async fn finish_cut_off_restocks(&self) -> anyhow::Result<()> {
        for pending in self.stock.ledger.pending_restocks(RESTOCK_GRACE).await? {
            tracing::warn!(return_id = %pending.return_id, "finishing a restock cut off by a crash");
            self.stock
                .restock(&pending.return_id, &pending.order_id, &pending.lines)
                .await?;
        }
        Ok(())
    }
}
