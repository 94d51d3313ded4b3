//! Background duties, run by every instance: the reaper (expires due holds),
//! the outbox drain (persists outbox entries) and the rebuild guard (rebuilds
//! a Redis that lost its data); and reconciliation, run at start-up and on
//! demand. Each exposes one step,
//! `try_execute_task`, so tests can drive it deterministically; `spawn` runs
//! the steps in a loop until shutdown. Both are safe with several instances
//! running them at once: the reaper's step is one atomic script, and the
//! drain's writes are idempotent per outbox entry.

mod balancer;
mod drain;
mod guard;
mod reaper;
mod rebuild;

pub use balancer::Balancer;
pub use drain::Drain;
pub use guard::{Readiness, RebuildGuard};
pub use reaper::Reaper;
pub use rebuild::{Reconciler, Report, REBUILD_LEASE};

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Found nothing to do.
    Idle,
    /// Did `n` items; there may be more right away.
    Worked(usize),
}

/// Runs `step` every `interval` (at once again while it reports a full
/// batch, or when `wake` is notified) until `shutdown` is cancelled. Errors
/// are logged and retried.
pub fn spawn<F, Fut>(
    name: &'static str,
    interval: Duration,
    wake: Option<Arc<Notify>>,
    shutdown: CancellationToken,
    mut step: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<(Outcome, bool)>> + Send,
{
    let wake = wake.unwrap_or_default();
    tokio::spawn(async move {
        tracing::info!(task = name, "background task started");
        loop {
            let more = match step().await {
                Ok((_, more)) => more,
                Err(e) => {
                    tracing::warn!(task = name, error = ?e, "background step failed; retrying");
                    false
                }
            };
            if more {
                tokio::task::yield_now().await;
                if shutdown.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
                _ = wake.notified() => {}
            }
        }
        tracing::info!(task = name, "background task stopped");
    })
}
