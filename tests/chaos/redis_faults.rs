//! Redis SIGKILLed under load and restarted on the same data directory.

use crate::harness::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_three_times() {
    // Arrange
    raise_fd_limit();
    let db = Database::create().await;
    let mut redis = Redis::start().await;
    let env = ServiceEnv::new(redis.url(), db.url.clone());
    let mut service = Service::start("stockhold", &env);
    service.wait_ready(READY_WITHIN).await;
    let catalogue = Catalogue::standard();
    catalogue.create(&service.url()).await;

    // Act: three kills, a second of downtime each; the AOF replays on restart.
    let plan = LoadPlan::new("redis", CLIENTS, Duration::from_secs(15), &catalogue);
    let load = Load::start(plan, vec![service.url()]);
    let mut faults = Faults::new();
    let mut gaps = Vec::new();
    for round in 0..3u32 {
        faults
            .until(Duration::from_secs(3 + 4 * round as u64))
            .await;
        let in_flight = load
            .stats()
            .commits_in_flight_at_least(3, Duration::from_secs(2))
            .await;
        redis.kill();
        faults.record(format!("Redis SIGKILLed ({in_flight} commits in flight)"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.restart().await;
        let back = Instant::now();
        gaps.push(note_writes_resumed(&load, &mut faults, back, "Redis answered again").await);
    }
    let outcome = load.finish().await;

    // Assert
    service.wait_ready(READY_WITHIN).await;
    let findings = check(&[service.url()], &db.url, &catalogue, &outcome).await;
    report("redis_killed_three_times", &faults, &outcome, &findings);
    assert_writes_resumed("redis_killed_three_times", &gaps);
}
