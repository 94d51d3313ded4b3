//! The reaper: returns the units of holds whose time ran out, in every
//! partition.

use super::Outcome;
use crate::engine::Engine;

/// Expires due holds in batches.
#[derive(Clone)]
pub struct Reaper {
    engine: Engine,
    batch: usize,
}

impl Reaper {
    /// A reaper expiring up to `batch` holds per script call.
    pub fn new(engine: Engine, batch: usize) -> Self {
        Reaper { engine, batch }
    }

    /// Expires one batch of due holds in each partition, and finishes the
    /// commits of baskets over several partitions and the transfers between
    /// hot-SKU buckets that stalled (their instance went away between
    /// steps). The flag says whether a batch was
    /// full, so there may be more due right now.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let (mut done, mut full) = (0, false);
        for p in self.engine.partitions().all() {
            let expired = self.engine.expire_due(p, self.batch).await?;
            let finished = self.engine.finish_commits(p, self.batch).await?
                + self.engine.finish_transfers(p).await?;
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
}
