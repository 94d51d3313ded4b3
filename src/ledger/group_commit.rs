//! Group commit: the outbox entries of commits made at the same moment are
//! recorded in one Postgres transaction, so one WAL flush and a handful of
//! statements serve many buyers. A few writers run at once; while one
//! transaction is in flight the next batch gathers.

use super::{Ledger, LedgerError};
use crate::domain::OutboxEntry;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

/// Entries waiting for a writer, at most; a caller beyond that waits to
/// queue (backpressure), it is not refused.
const QUEUE: usize = 4096;

struct Job {
    entry: OutboxEntry,
    done: oneshot::Sender<bool>,
}

/// Records outbox entries for callers that wait for them to be in Postgres.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts `writers` tasks recording up to `batch` entries per
    /// transaction. They stop when the last `GroupCommit` clone is dropped,
    /// after recording what was queued. Must be called inside a Tokio runtime.
    pub fn start(ledger: Ledger, writers: usize, batch: usize) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..writers.max(1) {
            tokio::spawn(write(ledger.clone(), queue.clone(), batch.max(1)));
        }
        GroupCommit { jobs }
    }

    /// Records `entry`; true once it is in Postgres (now or before), false
    /// if that failed (the outbox drain will record it later).
    pub async fn record(&self, entry: OutboxEntry) -> bool {
        let (done, recorded) = oneshot::channel();
        if self.jobs.send(Job { entry, done }).await.is_err() {
            return false;
        }
        recorded.await.unwrap_or(false)
    }
}

/// One writer: takes whatever is queued (at least one job, at most `batch`),
/// records it in one transaction, answers every caller, and again.
async fn write(ledger: Ledger, queue: Arc<Mutex<mpsc::Receiver<Job>>>, batch: usize) {
    loop {
        let mut jobs = Vec::with_capacity(batch);
        {
            let mut queue = queue.lock().await;
            if queue.recv_many(&mut jobs, batch).await == 0 {
                return;
            }
        }
        let entries: Vec<OutboxEntry> = jobs.iter().map(|j| j.entry.clone()).collect();
        metrics::histogram!(crate::metrics::GROUP_COMMIT_SIZE).record(entries.len() as f64);
        let outcome = record_batch(&ledger, &entries).await;
        let unreachable = outcome == Outcome::Unreachable;
        for (job, recorded) in jobs.into_iter().zip(outcome.per_entry(entries.len())) {
            let _ = job.done.send(recorded);
        }
        if unreachable {
            // Whoever queued meanwhile would wait out the same outage batch
            // after batch: they get their 202 now, and the drain records
            // their entries once Postgres is back.
            let mut queue = queue.lock().await;
            while let Ok(job) = queue.try_recv() {
                let _ = job.done.send(false);
            }
        }
    }
}

/// What recording a batch came to.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Every entry is in Postgres.
    Recorded,
    /// Postgres could not be reached; none is.
    Unreachable,
    /// Entry by entry, whether it is.
    Each(Vec<bool>),
}

impl Outcome {
    fn per_entry(self, n: usize) -> Vec<bool> {
        match self {
            Outcome::Recorded => vec![true; n],
            Outcome::Unreachable => vec![false; n],
            Outcome::Each(each) => each,
        }
    }
}

/// Records a batch. A batch that fails for a reason other than an
/// unreachable Postgres is tried entry by entry, so one bad entry costs only
/// its own caller a 202.
async fn record_batch(ledger: &Ledger, entries: &[OutboxEntry]) -> Outcome {
    match ledger.record(entries).await {
        Ok(_) => Outcome::Recorded,
        Err(LedgerError::Unavailable(e)) => {
            tracing::warn!(error = %e, entries = entries.len(),
                "postgres unavailable; the outbox drain will record the entries");
            Outcome::Unreachable
        }
        Err(e) if entries.len() > 1 => {
            tracing::warn!(error = ?e, entries = entries.len(), "recording a batch failed; retrying entry by entry");
            let mut each = Vec::with_capacity(entries.len());
            for entry in entries {
                each.push(record_one(ledger, entry).await);
            }
            Outcome::Each(each)
        }
        Err(e) => {
            tracing::error!(error = ?e, outbox = %entries[0].id, "recording an outbox entry failed; the drain will retry");
            Outcome::Each(vec![false])
        }
    }
}

async fn record_one(ledger: &Ledger, entry: &OutboxEntry) -> bool {
    match ledger.record(std::slice::from_ref(entry)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = ?e, outbox = %entry.id, "recording an outbox entry failed; the drain will retry");
            false
        }
    }
}
