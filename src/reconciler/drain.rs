//! The outbox drain: applies outbox entries to the ledger in stream order,
//! moves the watermark with them, and trims what is safely persisted.

use super::Outcome;
use crate::domain::StreamId;
use crate::engine::Engine;
use crate::ledger::Ledger;
use std::time::Duration;

/// Persists the outbox in batches.
#[derive(Clone)]
pub struct Drain {
    engine: Engine,
    ledger: Ledger,
    batch: usize,
    retention: Duration,
}

impl Drain {
    /// A drain applying up to `batch` entries per transaction and keeping
    /// persisted entries in the stream for `retention` (so a rebuild that
    /// read the watermark a moment ago still finds the entries after it).
    pub fn new(engine: Engine, ledger: Ledger, batch: usize, retention: Duration) -> Self {
        Drain {
            engine,
            ledger,
            batch,
            retention,
        }
    }

    /// Applies the next batch after the watermark. The flag says whether
    /// the batch was full.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let watermark = self.ledger.watermark().await?;
        let entries = self.engine.outbox_after(watermark, self.batch).await?;
        let Some(last) = entries.last().map(|e| e.id) else {
            return Ok((Outcome::Idle, false));
        };
        let applied = self.ledger.apply(&entries, Some(last)).await?;
        if applied > 0 {
            tracing::info!(applied, watermark = %last, "outbox entries persisted by the drain");
        }
        let keep_from = StreamId {
            ms: last.ms - self.retention.as_millis() as i64,
            seq: 0,
        };
        if keep_from.ms > 0 {
            self.engine.trim_outbox(keep_from).await?;
        }
        Ok((Outcome::Worked(entries.len()), entries.len() >= self.batch))
    }
}
