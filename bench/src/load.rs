//! The load loop: workers bounded in time and count, closed-loop (as fast as
//! answers come back) or open-loop at a fixed rate, latency histograms per
//! call kind, and an indicatif progress bar per phase.

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latencies in microseconds, 1 µs to 120 s, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

/// How one phase runs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Workers (requests in flight at most).
    pub concurrency: usize,
    /// How long new units are started.
    pub duration: Duration,
    /// Units started at most, over all workers.
    pub max_units: u64,
    /// Open loop: units started per second, on a fixed schedule.
    pub rate: Option<f64>,
}

struct Shared {
    start: Instant,
    deadline: Instant,
    rate: Option<f64>,
    max_units: u64,
    issued: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
}

/// Hands out start times of units of work until the phase is over.
#[derive(Clone)]
pub struct Pacer(Arc<Shared>);

impl Pacer {
    /// The start of the next unit (the scheduled time in open loop, so that
    /// queueing behind a slow answer counts in the latency), or `None` once
    /// the time or the count is used up.
    pub async fn next(&self) -> Option<Instant> {
        let i = self.0.issued.fetch_add(1, Relaxed);
        if i >= self.0.max_units {
            return None;
        }
        match self.0.rate {
            None => {
                let now = Instant::now();
                (now < self.0.deadline).then_some(now)
            }
            Some(rate) => {
                let at = self.0.start + Duration::from_secs_f64(i as f64 / rate);
                if at >= self.0.deadline {
                    return None;
                }
                tokio::time::sleep_until(at.into()).await;
                Some(at)
            }
        }
    }

    /// Whether the phase is still on (a long unit checks between calls).
    pub fn running(&self) -> bool {
        Instant::now() < self.0.deadline
    }
}

/// What one worker (and, merged, one phase) saw.
pub struct Recorder {
    shared: Arc<Shared>,
    /// Latency of a unit: a basket (reserve [+ commit]) or, in the shopping
    /// day, any one call.
    pub unit: Histogram<u64>,
    /// Latency by call kind (reserve, commit, availability, …).
    pub calls: BTreeMap<&'static str, Histogram<u64>>,
    /// Units done without error.
    pub units: u64,
    /// Basket lines in those units.
    pub lines: u64,
    /// Successful calls by kind.
    pub ok_calls: BTreeMap<&'static str, u64>,
    /// Failed calls by cause.
    pub errors: BTreeMap<String, u64>,
    /// Commits answered 202 (sale made, persisted later by the drain).
    pub deferred: u64,
}

impl Recorder {
    fn new(shared: Arc<Shared>) -> Self {
        Recorder {
            shared,
            unit: histogram(),
            calls: BTreeMap::new(),
            units: 0,
            lines: 0,
            ok_calls: BTreeMap::new(),
            errors: BTreeMap::new(),
            deferred: 0,
        }
    }

    /// Records one call started at `started`; true if it succeeded.
    pub fn call(
        &mut self,
        kind: &'static str,
        started: Instant,
        result: &Result<(), String>,
    ) -> bool {
        let us = started.elapsed().as_micros().max(1) as u64;
        self.calls
            .entry(kind)
            .or_insert_with(histogram)
            .saturating_record(us);
        match result {
            Ok(()) => {
                *self.ok_calls.entry(kind).or_default() += 1;
                true
            }
            Err(cause) => {
                *self.errors.entry(format!("{kind}: {cause}")).or_default() += 1;
                self.shared.errors.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Records a finished unit of `lines` lines started at `started`.
    pub fn unit_done(&mut self, started: Instant, lines: usize) {
        let us = started.elapsed().as_micros().max(1) as u64;
        self.unit.saturating_record(us);
        self.units += 1;
        self.lines += lines as u64;
        self.shared.ok.fetch_add(1, Relaxed);
    }

    /// Errors over all causes.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: Recorder) {
        self.unit.add(&other.unit).expect("same bounds");
        for (k, h) in other.calls {
            self.calls
                .entry(k)
                .or_insert_with(histogram)
                .add(&h)
                .expect("same bounds");
        }
        self.units += other.units;
        self.lines += other.lines;
        for (k, v) in other.ok_calls {
            *self.ok_calls.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.deferred += other.deferred;
    }
}

/// A finished phase's figures.
pub struct Ran {
    /// Everything the workers recorded, merged.
    pub rec: Recorder,
    /// From the first start to the last answer.
    pub elapsed: Duration,
}

impl Ran {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.rec.units as f64 / self.elapsed.as_secs_f64()
    }
}

/// A progress bar for a phase of `duration`.
pub fn bar(title: &str, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis().max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:<34} [{bar:24.cyan/blue}] {elapsed:>4} {msg}")
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(title.to_owned());
    bar
}

/// Runs `worker` on `plan.concurrency` tasks until the plan is used up,
/// showing progress, and merges what they recorded.
pub async fn run<F, Fut>(title: &str, plan: &Plan, worker: F) -> Ran
where
    F: Fn(usize, Pacer, Recorder) -> Fut,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let start = Instant::now();
    let shared = Arc::new(Shared {
        start,
        deadline: start + plan.duration,
        rate: plan.rate,
        max_units: plan.max_units,
        issued: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let pb = bar(title, plan.duration);
    let ticker = {
        let (shared, pb) = (shared.clone(), pb.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let secs = shared.start.elapsed().as_secs_f64();
                let ok = shared.ok.load(Relaxed);
                pb.set_position((secs * 1000.0) as u64);
                pb.set_message(format!(
                    "{ok} done, {:.0}/s, {} errors",
                    ok as f64 / secs.max(1e-3),
                    shared.errors.load(Relaxed)
                ));
            }
        })
    };
    let tasks: Vec<_> = (0..plan.concurrency)
        .map(|i| {
            tokio::spawn(worker(
                i,
                Pacer(shared.clone()),
                Recorder::new(shared.clone()),
            ))
        })
        .collect();
    let mut rec = Recorder::new(shared.clone());
    for task in tasks {
        match task.await {
            Ok(r) => rec.merge(r),
            Err(e) => {
                *rec.errors
                    .entry(format!("worker panicked: {e}"))
                    .or_default() += 1
            }
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    pb.finish_with_message(format!(
        "{} done, {:.0}/s, {} errors",
        rec.units,
        rec.units as f64 / elapsed.as_secs_f64(),
        rec.error_count()
    ));
    Ran { rec, elapsed }
}
