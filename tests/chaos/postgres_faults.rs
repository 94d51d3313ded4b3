//! Postgres stopped for more than ten seconds under load, then started.

use crate::harness::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds() {
    // Arrange: a Postgres of the test's own (the shared one must keep running).
    raise_fd_limit();
    let mut postgres = PgCluster::start().await;
    let redis = Redis::start().await;
    let env = ServiceEnv::new(redis.url(), postgres.url());
    let mut service = Service::start("stockhold", &env);
    service.wait_ready(READY_WITHIN).await;
    let catalogue = Catalogue::standard();
    catalogue.create(&service.url()).await;

    // Act
    let plan = LoadPlan::new("postgres", CLIENTS, Duration::from_secs(18), &catalogue);
    let load = Load::start(plan, vec![service.url()]);
    let mut faults = Faults::new();
    faults.until(Duration::from_secs(3)).await;
    let in_flight = load
        .stats()
        .commits_in_flight_at_least(3, Duration::from_secs(2))
        .await;
    let accepted_before = load.stats().accepted.load(Ordering::SeqCst);
    let stopped = Instant::now();
    let probe = probe_reserves(
        service.url(),
        catalogue.probe_sku(),
        Duration::from_millis(10_500),
    );
    postgres.stop().await;
    faults.record(format!(
        "Postgres stopped, -m immediate ({in_flight} commits in flight)"
    ));
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let accepted_while_down = load.stats().accepted.load(Ordering::SeqCst) - accepted_before;
    let gap = longest_gap(&probe.await.unwrap(), stopped, Instant::now());
    postgres.start_again().await;
    let down = stopped.elapsed();
    faults.note(format!(
        "longest stretch without a reserve while Postgres was down: {:.2} s",
        gap.as_secs_f64()
    ));
    faults.note(format!(
        "Postgres started after {:.1} s down ({accepted_while_down} commits answered 202 meanwhile)",
        down.as_secs_f64()
    ));
    let outcome = load.finish().await;

    // Assert
    assert!(down >= Duration::from_secs(10), "down only {down:?}");
    service.wait_ready(READY_WITHIN).await;
    let findings = check(&[service.url()], &postgres.url(), &catalogue, &outcome).await;
    report(
        "postgres_stopped_for_ten_seconds",
        &faults,
        &outcome,
        &findings,
    );
    assert!(
        gap <= WRITES_RESUME_WITHIN,
        "reserves stopped for {gap:?} while Postgres was down (reserves do not need Postgres)"
    );
    assert!(
        accepted_while_down > 0,
        "no commit answered 202 while Postgres was down: the 202 path went untested"
    );
}
