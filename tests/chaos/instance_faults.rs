//! Two instances on one Redis and one Postgres; one is SIGKILLed mid-load
//! and its clients move to the other.

use crate::harness::*;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_killed() {
    // Arrange: same Redis, same key prefix, same database.
    raise_fd_limit();
    let db = Database::create().await;
    let redis = Redis::start().await;
    let env = ServiceEnv::new(redis.url(), db.url.clone());
    let mut survivor = Service::start("stockhold-a", &env);
    let mut victim = Service::start("stockhold-b", &env);
    survivor.wait_ready(READY_WITHIN).await;
    victim.wait_ready(READY_WITHIN).await;
    let catalogue = Catalogue::standard();
    catalogue.create(&survivor.url()).await;

    // Act
    let plan = LoadPlan::new("instances", CLIENTS, Duration::from_secs(14), &catalogue);
    let load = Load::start(plan, vec![survivor.url(), victim.url()]);
    let mut faults = Faults::new();
    faults.until(Duration::from_secs(5)).await;
    let in_flight = load
        .stats()
        .commits_in_flight_at_least(5, Duration::from_secs(3))
        .await;
    victim.kill();
    let acked_at_kill = load.stats().acked.load(Ordering::SeqCst);
    faults.record(format!(
        "{} SIGKILLed ({in_flight} commits in flight on both)",
        victim.name
    ));
    let outcome = load.finish().await;
    let acked_after_kill = outcome.commit_counts().acked() - acked_at_kill as usize;
    faults.note(format!(
        "{} acknowledged {acked_after_kill} commits after the kill",
        survivor.name
    ));

    // Assert
    survivor.wait_ready(READY_WITHIN).await;
    let findings = check(&[survivor.url()], &db.url, &catalogue, &outcome).await;
    report("two_instances_one_killed", &faults, &outcome, &findings);
    assert!(
        acked_after_kill > 0,
        "the surviving instance stopped selling"
    );
}
