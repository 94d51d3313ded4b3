//! The reaper: returns the units of holds whose time ran out, in every
//! partition.

use super::Outcome;
use crate::engine::Engine;
use crate::ledger::Ledger;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Stalled transfers between hot-SKU buckets are looked for this often (a
/// script call per partition; they are due 5 s after their take).
const TRANSFERS_EVERY: Duration = Duration::from_secs(1);

/// Expires due holds in batches.
#[derive(Clone)]
pub struct Reaper {
    engine: Engine,
    ledger: Ledger,
    batch: usize,
    transfers_looked_at: Arc<Mutex<Option<Instant>>>,
}

impl Reaper {
    /// A reaper expiring up to `batch` holds per script call; it asks
    /// `ledger` whether a stalled transfer's units were given already.
    pub fn new(engine: Engine, ledger: Ledger, batch: usize) -> Self {
        Reaper {
            engine,
            ledger,
            batch,
            transfers_looked_at: Arc::default(),
        }
    }

    /// Expires one batch of due holds in each partition, and finishes the
    /// commits of baskets over several partitions and the transfers between
    /// hot-SKU buckets that stalled (their instance went away between
    /// steps). The flag says whether a batch was
    /// full, so there may be more due right now.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let (mut done, mut full) = (0, false);
        let transfers = {
            let mut last = self.transfers_looked_at.lock().await;
            let due = last.is_none_or(|t| t.elapsed() >= TRANSFERS_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        for p in self.engine.partitions().all() {
            let expired = self.engine.expire_due(p, self.batch).await?;
            let mut finished = self.engine.finish_commits(p, self.batch).await?;
            if transfers {
                // Best effort: the holds of the next partitions come first.
                match self.finish_transfers(p).await {
                    Ok(n) => finished += n,
                    Err(e) => tracing::warn!(partition = %p, error = ?e,
                        "could not finish the stalled transfers; trying again"),
                }
            }
            if expired > 0 || finished > 0 {
                tracing::debug!(partition = %p, expired, finished, "expired due holds");
            }
            done += expired + finished;
            full |= expired >= self.batch || finished >= self.batch;
        }
        let outcome = if done == 0 {
            Outcome::Idle
        } else {
            Outcome::Worked(done)
        };
        Ok((outcome, full))
    }

    /// Finishes the transfers between hot-SKU buckets taken in `p` that
    /// stalled. Returns how many.
    async fn finish_transfers(&self, p: crate::domain::Partition) -> anyhow::Result<usize> {
        let stalled = self.engine.stalled_transfers(p).await?;
        let mut finished = 0;
        for t in &stalled {
            // Units are given only once their take is durable; the drain
            // records it from the source's outbox.
            let (taken, given) = self.ledger.transfer_recorded(t.sku.as_str(), &t.id).await?;
            if !taken {
                continue;
            }
            self.engine.finish_transfer(p, t, given).await?;
            finished += 1;
            tracing::warn!(sku = %t.sku, transfer = %t.id, units = t.units, to = %t.to, given,
                "finished a transfer between buckets that was left half done");
        }
        Ok(finished)
    }
}
