//! The rebuild guard: notices a Redis that lost its data or restarted, and
//! rebuilds it from the ledger while the service reports not ready.

use super::{Outcome, Reconciler};
use crate::engine::ServerState;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Whether start-up work is done; `/readyz` answers 503 until it is.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    /// Marks start-up work as done (true) or under way again (false).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether start-up work is done.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Watches Redis once a step.
#[derive(Clone)]
pub struct RebuildGuard {
    reconciler: Reconciler,
    instance: String,
    readiness: Arc<Readiness>,
}

impl RebuildGuard {
    /// A guard for this instance, reporting through `readiness`.
    pub fn new(reconciler: Reconciler, instance: String, readiness: Arc<Readiness>) -> Self {
        RebuildGuard {
            reconciler,
            instance,
            readiness,
        }
    }

    /// One look: a partition of Redis that is not rebuilt, or restarted
    /// or failed over since it was (its ready marker names another server
    /// run: it may have come back without its last moments), is rebuilt
    /// from the ledger.
    ///
    /// Readiness: not ready until every partition was rebuilt once; after
    /// that, not ready only while no partition is. A partition that fails
    /// over is rebuilt while the others serve, and every instance shares
    /// the same partitions: taking this one out of a load balancer's
    /// rotation would refuse the SKUs of the others and help none.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let engine = self.reconciler.engine();
        let mut ready = 0;
        for p in engine.partitions().all() {
            if engine.server_state(p).await? == ServerState::Ready {
                ready += 1;
            }
        }
        if ready == engine.partitions().count() {
            self.readiness.set(true);
            return Ok((Outcome::Idle, false));
        }
        self.readiness.set(ready > 0 && self.readiness.is_ready());
        self.reconciler.ensure_rebuilt(&self.instance).await?;
        self.readiness.set(true);
        Ok((Outcome::Worked(1), false))
    }
}
