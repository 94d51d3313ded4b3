//! The balancer: keeps the available units of each SKU spread over buckets
//! (hot-SKU buckets, see `engine::buckets`) even over its buckets, and its
//! retired buckets empty. Safe with several instances: every transfer takes
//! only what is available in its source, atomically.

use super::Outcome;
use crate::engine::Engine;

/// One pass over the spread SKUs.
#[derive(Clone)]
pub struct Balancer {
    engine: Engine,
}

impl Balancer {
    /// A balancer of `engine`'s spread SKUs.
    pub fn new(engine: Engine) -> Self {
        Balancer { engine }
    }

    /// Evens out each spread SKU this instance knows of. Never reports more
    /// work right away.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let mut moved = 0;
        for (sku, spread) in self.engine.spread_skus() {
            match self.engine.balance(&sku, spread).await {
                Ok(n) => moved += n,
                Err(e) => tracing::warn!(%sku, error = ?e, "could not balance a spread SKU"),
            }
        }
        let outcome = if moved > 0 {
            Outcome::Worked(moved as usize)
        } else {
            Outcome::Idle
        };
        Ok((outcome, false))
    }
}
