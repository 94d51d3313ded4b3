//! The rebuild guard: notices a Redis that lost its data or restarted, and
//! rebuilds it from the ledger while the service reports not ready.

use super::{Outcome, Reconciler};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    run_id: Arc<Mutex<Option<String>>>,
}

impl RebuildGuard {
    /// A guard for this instance, reporting through `readiness`.
    pub fn new(reconciler: Reconciler, instance: String, readiness: Arc<Readiness>) -> Self {
        RebuildGuard {
            reconciler,
            instance,
            readiness,
            run_id: Arc::default(),
        }
    }

    /// One look: a Redis that restarted (its run id changed) may have come
    /// back without its last moments (an AOF written every second), so it is
    /// marked not ready; a Redis that is not ready is rebuilt.
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let engine = self.reconciler.engine();
        let run_id = engine.server_run_id().await?;
        let previous = self
            .run_id
            .lock()
            .expect("run id lock")
            .replace(run_id.clone());
        if previous.is_some_and(|p| p != run_id) {
            tracing::warn!("Redis restarted; rebuilding its live counts from the ledger");
            engine.mark_not_ready().await?;
        }
        if engine.is_ready().await? {
            self.readiness.set(true);
            return Ok((Outcome::Idle, false));
        }
        self.readiness.set(false);
        self.reconciler.start_up(&self.instance).await?;
        self.readiness.set(true);
        Ok((Outcome::Worked(1), false))
    }
}
