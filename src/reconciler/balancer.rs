//! The balancer: learns from the ledger which SKUs are spread over buckets
//! (hot-SKU buckets, see `engine::buckets`), so this instance routes their
//! lines, and keeps each such SKU's available units even over its buckets
//! (and its retired buckets empty). Safe with several instances: every
//! transfer takes only what is available in its source, atomically.

use super::Outcome;
use crate::engine::{Engine, Spread};
use crate::ledger::Ledger;
use std::collections::HashMap;

/// One pass over the spread SKUs.
#[derive(Clone)]
pub struct Balancer {
    engine: Engine,
    ledger: Ledger,
}

impl Balancer {
    /// A balancer of `engine`'s spread SKUs, as `ledger` lists them.
    pub fn new(engine: Engine, ledger: Ledger) -> Self {
        Balancer { engine, ledger }
    }

    /// Reads the spread SKUs (keeping what it knew when Postgres does not
    /// answer) and evens each out. Never reports more work right away.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        match self.ledger.spread_skus().await {
            Ok(rows) => {
                let all: HashMap<String, Spread> = rows
                    .into_iter()
                    .map(|(sku, buckets, span)| {
                        let spread = Spread {
                            buckets: buckets.clamp(1, i32::from(u16::MAX)) as u16,
                            span: span.clamp(1, i32::from(u16::MAX)) as u16,
                        };
                        (sku, spread)
                    })
                    .collect();
                self.engine.set_spread(all);
            }
            Err(e) => {
                tracing::warn!(error = ?e, "could not read the spread SKUs; using the last known")
            }
        }
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
