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
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let engine = self.reconciler.engine();
        let mut all_ready = true;
        for p in engine.partitions().all() {
            all_ready &= engine.server_state(p).await? == ServerState::Ready;
        }
        if all_ready {
            self.readiness.set(true);
            return Ok((Outcome::Idle, false));
        }
        self.readiness.set(false);
        self.reconciler.ensure_rebuilt(&self.instance).await?;
        self.readiness.set(true);
        Ok((Outcome::Worked(1), false))
    }
}
