//! The service SIGKILLed in the middle of commits and started again, three
//! times, and once more while it starts up.

use crate::harness::*;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_killed_three_times() {
    // Arrange
    raise_fd_limit();
    let db = Database::create().await;
    let redis = Redis::start().await;
    let env = ServiceEnv::new(redis.url(), db.url.clone());
    let mut service = Service::start("stockhold", &env);
    service.wait_ready(READY_WITHIN).await;
    let catalogue = Catalogue::standard();
    catalogue.create(&service.url()).await;

    // Act: each kill waits for commits in flight, and for the service to be
    // back and serving since the kill before.
    let plan = LoadPlan::new("service", CLIENTS, Duration::from_secs(16), &catalogue);
    let load = Load::start(plan, vec![service.url()]);
    let mut faults = Faults::new();
    let mut gaps = Vec::new();
    for round in 0..3u32 {
        faults
            .until(Duration::from_secs(3 + 4 * round as u64))
            .await;
        let in_flight = load
            .stats()
            .commits_in_flight_at_least(5, Duration::from_secs(3))
            .await;
        service.kill();
        faults.record(format!("service SIGKILLed ({in_flight} commits in flight)"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        service.restart();
        if round == 2 {
            // Once more as it comes back: killed in its start-up repair.
            let starting = service.wait_listening(READY_WITHIN).await;
            service.kill();
            faults.record(if starting {
                "service SIGKILLed again at its first /healthz, start-up repair under way"
            } else {
                "service SIGKILLed again at its first /healthz (start-up repair already done)"
            });
            service.restart();
        }
        let took = service.wait_ready(READY_WITHIN).await;
        let back = Instant::now();
        faults.note(format!("service ready after {:.1} s", took.as_secs_f64()));
        gaps.push(note_writes_resumed(&load, &mut faults, back, "the service was ready").await);
    }
    let outcome = load.finish().await;

    // Assert
    let findings = check(&[service.url()], &db.url, &catalogue, &outcome).await;
    report("service_killed_three_times", &faults, &outcome, &findings);
    assert_writes_resumed("service_killed_three_times", &gaps);
}
