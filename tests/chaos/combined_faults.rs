//! The faults of issue 11 in one run, as a new user met them: Redis
//! SIGKILLed and restarted from its AOF (everysec), the service SIGKILLed and
//! restarted, Postgres stopped for ten seconds, under clients that send every
//! write with an Idempotency-Key and retry a lost answer with the same key.
//! Every order in Postgres must have been answered 200/201/202 (or be of a
//! commit whose answer never came), and writes must resume within seconds of
//! each component answering again.

use crate::harness::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_service_and_postgres_fail_in_one_run() {
    // Arrange
    raise_fd_limit();
    let mut postgres = PgCluster::start().await;
    let mut redis = Redis::start().await;
    let env = ServiceEnv::new(redis.url(), postgres.url());
    let mut service = Service::start("stockhold", &env);
    service.wait_ready(READY_WITHIN).await;
    let catalogue = Catalogue::standard();
    catalogue.create(&service.url()).await;

    // Act
    let plan = LoadPlan::new("all", 100, Duration::from_secs(26), &catalogue);
    let load = Load::start(plan, vec![service.url()]);
    let mut faults = Faults::new();
    let mut gaps = Vec::new();

    faults.until(Duration::from_secs(3)).await;
    let in_flight = load
        .stats()
        .commits_in_flight_at_least(3, Duration::from_secs(2))
        .await;
    redis.kill();
    faults.record(format!("Redis SIGKILLed ({in_flight} commits in flight)"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart().await;
    gaps.push(
        note_writes_resumed(&load, &mut faults, Instant::now(), "Redis answered again").await,
    );

    faults.until(Duration::from_secs(8)).await;
    let in_flight = load
        .stats()
        .commits_in_flight_at_least(3, Duration::from_secs(2))
        .await;
    service.kill();
    faults.record(format!("service SIGKILLed ({in_flight} commits in flight)"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    service.restart();
    service.wait_ready(READY_WITHIN).await;
    gaps.push(
        note_writes_resumed(&load, &mut faults, Instant::now(), "the service was ready").await,
    );

    faults.until(Duration::from_secs(13)).await;
    let stopped = Instant::now();
    let probe = probe_reserves(
        service.url(),
        catalogue.probe_sku(),
        Duration::from_secs(10),
    );
    postgres.stop().await;
    faults.record("Postgres stopped, -m immediate");
    tokio::time::sleep(Duration::from_secs(10)).await;
    let pg_gap = longest_gap(&probe.await.unwrap(), stopped, Instant::now());
    faults.note(format!(
        "longest stretch without a reserve while Postgres was down: {:.2} s",
        pg_gap.as_secs_f64()
    ));
    postgres.start_again().await;
    faults.note("Postgres started again");
    let outcome = load.finish().await;

    // Assert
    service.wait_ready(READY_WITHIN).await;
    let findings = check(&[service.url()], &postgres.url(), &catalogue, &outcome).await;
    report(
        "redis_service_and_postgres_fail_in_one_run",
        &faults,
        &outcome,
        &findings,
    );
    assert_writes_resumed("redis_service_and_postgres_fail_in_one_run", &gaps);
    assert!(
        pg_gap <= WRITES_RESUME_WITHIN,
        "reserves stopped for {pg_gap:?} while Postgres was down"
    );
}
