//! What every fault test shares: processes of the test's own (the real
//! `stockhold` binary, Redis with AOF, a throwaway Postgres cluster, a
//! database on the shared test Postgres), each killed and cleaned up when
//! dropped; free ports; readiness with a deadline; the load generator; the
//! invariant checker; and the per-test report.

mod invariants;
mod load;
mod processes;

pub use invariants::{check, Findings};
pub use load::{
    longest_gap, longest_gap_of, probe_each, probe_reserves, Catalogue, Load, LoadOutcome,
    LoadPlan, ProbeOutcome,
};
pub use processes::{Database, PgCluster, Redis, RedisCluster, Service, ServiceEnv};

use std::time::{Duration, Instant};

/// Clients driving every test: the fault suite promises "at least 200".
pub const CLIENTS: usize = 200;

/// Longest a service may take to (re)start and report ready. Generous: CI
/// runs the rest of the suite on the same two cores meanwhile.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// DESIGN.md, invariant 9: writes succeed again within 2 s of the failed
/// component answering again.
pub const WRITES_RESUME_WITHIN: Duration = Duration::from_secs(2);

/// Waits for the first reserve that succeeds after `back` (when the failed
/// component answered again), notes how long it took, and returns it.
pub async fn note_writes_resumed(
    load: &Load,
    faults: &mut Faults,
    back: Instant,
    what: &str,
) -> Duration {
    let took = load
        .stats()
        .reserve_succeeded_after(back, Duration::from_secs(30))
        .await
        .unwrap_or(Duration::MAX);
    faults.note(format!(
        "first reserve held {:.2} s after {what}",
        took.as_secs_f64()
    ));
    took
}

/// Fails the test if writes took longer than `WRITES_RESUME_WITHIN` to
/// resume after any fault.
pub fn assert_writes_resumed(test: &str, gaps: &[Duration]) {
    let worst = gaps.iter().max().copied().unwrap_or_default();
    assert!(
        worst <= WRITES_RESUME_WITHIN,
        "{test}: writes resumed {worst:?} after the component answered again \
         (allowed {WRITES_RESUME_WITHIN:?}); all: {gaps:?}"
    );
}

/// 200 clients keep 200+ sockets open, besides the children's own.
pub fn raise_fd_limit() {
    rlimit::increase_nofile_limit(10_000).expect("raise the open files limit");
}

/// The faults injected and what followed, with when (since the load
/// started).
pub struct Faults {
    started: Instant,
    log: Vec<String>,
    injected: usize,
}

impl Faults {
    /// An empty fault log; times count from now.
    pub fn new() -> Faults {
        Faults {
            started: Instant::now(),
            log: Vec::new(),
            injected: 0,
        }
    }

    /// Records a fault injected just now.
    pub fn record(&mut self, what: impl Into<String>) {
        self.injected += 1;
        self.note(what);
    }

    /// Records what happened after a fault (a recovery, say).
    pub fn note(&mut self, what: impl Into<String>) {
        let at = self.started.elapsed().as_secs_f64();
        let what = what.into();
        eprintln!("  [{at:6.2} s] {what}");
        self.log.push(format!("{at:.2} s: {what}"));
    }

    /// Sleeps until `at` after the load started.
    pub async fn until(&self, at: Duration) {
        tokio::time::sleep_until((self.started + at).into()).await;
    }

    /// How many faults were injected.
    pub fn count(&self) -> usize {
        self.injected
    }
}

/// Prints what a test did and found, then fails it on any anomaly.
pub fn report(test: &str, faults: &Faults, load: &LoadOutcome, findings: &Findings) {
    let c = load.commit_counts();
    println!("=== {test} ===");
    println!(
        "  load:      {} clients for {:.1} s: {} requests ({} reservations held, {} rounds)",
        load.clients,
        load.duration.as_secs_f64(),
        load.requests,
        load.reserved,
        load.rounds
    );
    println!(
        "  commits:   {} acknowledged (201: {}, 202: {}, 200 on retry: {}), {} rejected, {} unknown ({} made, {} not made)",
        c.acked(),
        c.created,
        c.accepted,
        c.repeated,
        c.rejected,
        c.unknown,
        findings.unknown_made,
        findings.unknown_not_made
    );
    println!(
        "  faults:    {} injected; {}",
        faults.count(),
        faults.log.join("; ")
    );
    println!(
        "  after:     settled in {:.1} s; {} orders / {} units sold in Postgres; statuses {}",
        findings.settled_in.as_secs_f64(),
        findings.orders,
        findings.units_sold,
        load.tally_line()
    );
    println!("  anomalies: {}", findings.anomalies.len());
    for a in findings.anomalies.iter().take(30) {
        println!("    - {a}");
    }
    assert!(
        findings.anomalies.is_empty(),
        "{test}: {} anomalies, first: {}",
        findings.anomalies.len(),
        findings.anomalies[0]
    );
}
