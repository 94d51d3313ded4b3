//! The reaper: returns the units of holds whose time ran out.

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

    /// Expires one batch of due holds. The flag says whether the batch was
    /// full, so there may be more due right now.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let expired = self.engine.expire_due(self.batch).await?;
        if expired > 0 {
            tracing::debug!(expired, "expired due holds");
        }
        let outcome = if expired == 0 {
            Outcome::Idle
        } else {
            Outcome::Worked(expired)
        };
        Ok((outcome, expired >= self.batch))
    }
}
