//! Faults of a real Redis Cluster (issue 12): 3 masters and 3 replicas on
//! loopback, the live state in 16 partitions (`{p0}`…`{p15}`, one slot
//! each), under load: a master SIGKILLed and failed over by the cluster, a
//! `CLUSTER FAILOVER`, and the slots of two partitions that hold stock
//! moved to another master and back, each under the suite's usual 200
//! clients. Besides the invariants every fault test
//! checks, one shopper per deep SKU holds and releases a unit every 50 ms,
//! and the longest stretch without a hold is measured separately for the
//! SKUs whose partitions the fault touched (they may stop until the cluster
//! has recovered: goal ≤ 5 s) and for every other SKU (they must keep
//! selling).

use crate::harness::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stockhold::domain::{Partition, Partitions, Sku};

/// `redis.partitions` of the service under test: a few per master.
const PARTITIONS: u16 = 16;
/// Longest the SKUs of the fault's partitions may go without a hold.
const AFFECTED_GAP: Duration = Duration::from_secs(5);
/// Longest the fault's SKUs may wait once a new master serves their slot.
const RECOVERY: Duration = Duration::from_secs(1);
/// Longest the other SKUs may: they must keep serving.
const OTHERS_GAP: Duration = Duration::from_secs(2);

/// A cluster, a Postgres and a service of the test's own, with the
/// standard catalogue created.
struct Rig {
    cluster: RedisCluster,
    postgres: PgCluster,
    service: Service,
    env: ServiceEnv,
    catalogue: Catalogue,
}

impl Rig {
    async fn start() -> Rig {
        raise_fd_limit();
        let cluster = RedisCluster::start().await;
        let postgres = PgCluster::start().await;
        let env = ServiceEnv::cluster(cluster.urls(), postgres.url(), PARTITIONS);
        let mut service = Service::start("stockhold", &env);
        service.wait_ready(READY_WITHIN).await;
        let catalogue = Catalogue::standard();
        catalogue.create(&service.url()).await;
        Rig {
            cluster,
            postgres,
            service,
            env,
            catalogue,
        }
    }

    fn partition(&self, sku: &str) -> Partition {
        Partitions::new(PARTITIONS).of_sku(&Sku::parse(sku).expect("a SKU"))
    }

    /// A key of `sku`'s partition (its hash tag decides the slot).
    fn key_of(&self, sku: &str) -> String {
        format!("{}:{{{}}}:avail", self.env.key_prefix, self.partition(sku))
    }

    /// The SKUs the probes hold: the deep ones (the hot ones sell out).
    fn probed(&self) -> Vec<String> {
        self.catalogue
            .names()
            .filter(|s| !s.starts_with("HOT"))
            .map(String::from)
            .collect()
    }

    /// The master serving each probed SKU's partition.
    async fn masters_of_probed(&self) -> BTreeMap<String, u16> {
        let mut at = BTreeMap::new();
        for sku in self.probed() {
            let master = self.cluster.master_of_key(&self.key_of(&sku)).await;
            at.insert(sku, master);
        }
        at
    }

    /// The master to fail: the one of the hot SKUs (where a double sale
    /// would show), if it serves a probed SKU too, else DEEP-0's.
    async fn target(&self) -> u16 {
        let hot = self.cluster.master_of_key(&self.key_of("HOT-0")).await;
        let at = self.masters_of_probed().await;
        if at.values().any(|m| *m == hot) {
            hot
        } else {
            at["DEEP-0"]
        }
    }

    /// The probed SKUs on `master`, and the others.
    async fn split_by_master(&self, master: u16) -> (Vec<String>, Vec<String>) {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for (sku, m) in self.masters_of_probed().await {
            if m == master {
                on.push(sku)
            } else {
                off.push(sku)
            }
        }
        assert!(
            !on.is_empty() && !off.is_empty(),
            "need probed SKUs on master {master} and elsewhere: {on:?} / {off:?}"
        );
        (on, off)
    }
}

/// The longest gaps of both groups in `[from, to]`, noted in the fault log.
fn gaps(
    faults: &mut Faults,
    probes: &BTreeMap<String, ProbeOutcome>,
    (affected, others): (&[String], &[String]),
    from: Instant,
    to: Instant,
) -> (Duration, Duration) {
    let (a, a_sku, a_fail) = longest_gap_of(probes, affected, from, to);
    let (o, o_sku, o_fail) = longest_gap_of(probes, others, from, to);
    let held = |skus: &[String]| -> usize {
        skus.iter()
            .filter_map(|s| probes.get(s))
            .map(|p| p.held.len())
            .sum()
    };
    faults.note(format!(
        "longest stretch without a hold: affected {affected:?} {:.2} s ({a_sku}; {} holds, failures {a_fail:?}); others {others:?} {:.2} s ({o_sku}; {} holds, failures {o_fail:?})",
        a.as_secs_f64(),
        held(affected),
        o.as_secs_f64(),
        held(others),
    ));
    (a, o)
}

/// Waits for the service, checks the invariants and prints the figures:
/// the gaps, what the service logged about Redis, then the standard report
/// (which fails the test on any anomaly). A service that does not become
/// ready again fails the test after printing what the load saw.
async fn check_and_report(
    test: &str,
    rig: &mut Rig,
    faults: &Faults,
    outcome: &LoadOutcome,
    (affected, others): (Duration, Duration),
) {
    let ready = rig.service.ready_within(READY_WITHIN).await;
    let findings = match ready {
        Ok(_) => Some(
            check(
                &[rig.service.url()],
                &rig.postgres.url(),
                &rig.catalogue,
                outcome,
            )
            .await,
        ),
        Err(_) => None,
    };
    println!(
        "  gaps:      longest without a hold: affected partitions {:.2} s (goal {:?}), others {:.2} s (bound {:?})",
        affected.as_secs_f64(),
        AFFECTED_GAP,
        others.as_secs_f64(),
        OTHERS_GAP
    );
    let (n, lines) = rig.service.log_lines_with(&["ERROR", "WARN"], 6);
    println!("  service:   {n} warnings/errors logged; the first:");
    for l in lines {
        let l: String = l.chars().take(300).collect();
        println!("    | {l}");
    }
    let (n, lines) = rig.service.log_lines_with(
        &[
            "non local key",
            "TRYAGAIN",
            "Ask",
            "Moved",
            "BUSYKEY",
            "internal error",
        ],
        6,
    );
    println!("  redirects: {n} service log lines about non-local keys, ASK, MOVED, TRYAGAIN, 500s; the first:");
    for l in lines {
        let l: String = l.chars().take(300).collect();
        println!("    | {l}");
    }
    match (ready, findings) {
        (Ok(_), Some(findings)) => report(test, faults, outcome, &findings),
        (ready, _) => {
            let e = ready.err().unwrap_or_default();
            println!("  redis:     what the nodes see of their clients, 1 s apart:");
            for round in 0..2 {
                for line in rig.cluster.clients_summary().await {
                    println!("    {round}: {line}");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let c = outcome.commit_counts();
            println!("=== {test} (not checked: the service never became ready again) ===");
            println!(
                "  load:      {} clients for {:.1} s: {} requests ({} reservations held, {} rounds)",
                outcome.clients,
                outcome.duration.as_secs_f64(),
                outcome.requests,
                outcome.reserved,
                outcome.rounds
            );
            println!(
                "  commits:   {} acknowledged (201: {}, 202: {}, 200 on retry: {}), {} rejected, {} unknown",
                c.acked(),
                c.created,
                c.accepted,
                c.repeated,
                c.rejected,
                c.unknown
            );
            println!("  faults:    {} injected", faults.count());
            println!("  statuses:  {}", outcome.tally_line());
            panic!("{test}: the service was not ready again after the fault: {e}");
        }
    }
}

/// The other partitions' SKUs never stop; the fault's are back within
/// AFFECTED_GAP, or, when Redis itself took longer to hand the slot to a
/// new master than AFFECTED_GAP leaves room for, within RECOVERY of that
/// hand-over (`redis_took`; the service cannot write before it).
fn assert_gaps(test: &str, (affected, others): (Duration, Duration), redis_took: Duration) {
    assert!(
        others <= OTHERS_GAP,
        "{test}: SKUs of untouched partitions went {others:?} without a hold (bound {OTHERS_GAP:?})"
    );
    assert!(
        affected <= AFFECTED_GAP.max(redis_took + RECOVERY),
        "{test}: SKUs of the fault's partitions went {affected:?} without a hold (goal \
         {AFFECTED_GAP:?}; Redis handed the slot over after {redis_took:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_and_failed_over() {
    master_killed("cluster_master_killed_and_failed_over", CLIENTS).await;
}

/// The master a fault hits, the probed SKUs on it and elsewhere, the slot
/// of the first of those on it, and its replica.
struct Aim {
    target: u16,
    groups: (Vec<String>, Vec<String>),
    slot: u16,
    replica: u16,
}

impl Rig {
    async fn aim(&self) -> Aim {
        let target = self.target().await;
        let groups = self.split_by_master(target).await;
        let slot = self.cluster.keyslot(&self.key_of(&groups.0[0])).await;
        let replica = self.cluster.replica_of(target).await;
        Aim {
            target,
            groups,
            slot,
            replica,
        }
    }
}

/// The load and the probes running, 4 s in, with commits in flight.
struct Loaded {
    load: Load,
    probes: tokio::task::JoinHandle<BTreeMap<String, ProbeOutcome>>,
    faults: Faults,
    in_flight: i64,
}

impl Rig {
    /// Starts `clients` buying for `seconds` (orders named `code`) and the
    /// probes (2 s shorter), and waits until the fault is due: 4 s in, with
    /// at least 3 commits in flight (or 2 s more).
    async fn load_until_fault(&self, code: &str, clients: usize, seconds: Duration) -> Loaded {
        let plan = LoadPlan::new(code, clients, seconds, &self.catalogue);
        let load = Load::start(plan, vec![self.service.url()]);
        let probe_for = seconds - Duration::from_secs(2);
        let probes = probe_each(self.service.url(), self.probed(), probe_for);
        let faults = Faults::new();
        faults.until(Duration::from_secs(4)).await;
        let in_flight = load
            .stats()
            .commits_in_flight_at_least(3, Duration::from_secs(2))
            .await;
        Loaded {
            load,
            probes,
            faults,
            in_flight,
        }
    }
}

async fn master_killed(test: &str, clients: usize) {
    // Arrange
    let mut rig = Rig::start().await;
    let Aim {
        target,
        groups,
        slot,
        replica,
    } = rig.aim().await;

    // Act: the master SIGKILLed; its replica takes over after the node
    // timeout (2 s); the old master comes back as a replica.
    let Loaded {
        load,
        probes,
        mut faults,
        in_flight,
    } = rig
        .load_until_fault("ckill", clients, Duration::from_secs(20))
        .await;
    rig.cluster.kill(target);
    let killed = Instant::now();
    faults.record(format!(
        "master {target} (slot {slot}, partitions of {:?}) SIGKILLed ({in_flight} commits in flight)",
        groups.0
    ));
    let promoted = rig
        .cluster
        .wait_slot_moved_from(slot, target, Duration::from_secs(20))
        .await;
    let redis_took = killed.elapsed();
    faults.note(format!(
        "{promoted} serves slot {slot} (the master's replica was {replica})"
    ));
    note_writes_resumed(&load, &mut faults, killed, "the kill").await;
    faults.until(Duration::from_secs(12)).await;
    rig.cluster.restart(target).await;
    rig.cluster.wait_healthy(Duration::from_secs(30)).await;
    let rejoined = rig.cluster.is_master(target).await;
    faults.note(format!(
        "old master {target} restarted; cluster ok; it is a {}",
        if rejoined { "master" } else { "replica" }
    ));
    let probes = probes.await.expect("the probes");
    let gaps = gaps(
        &mut faults,
        &probes,
        (&groups.0, &groups.1),
        killed,
        killed + Duration::from_secs(12),
    );
    let outcome = load.finish().await;

    // Assert
    check_and_report(test, &mut rig, &faults, &outcome, gaps).await;
    assert!(
        !rejoined,
        "{test}: the restarted master did not become a replica"
    );
    assert_gaps(test, gaps, redis_took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_manual_failover() {
    manual_failover("cluster_manual_failover", CLIENTS).await;
}

async fn manual_failover(test: &str, clients: usize) {
    // Arrange
    let mut rig = Rig::start().await;
    let Aim {
        target,
        groups,
        slot,
        replica,
    } = rig.aim().await;

    // Act: CLUSTER FAILOVER on the replica: the master pauses its clients
    // until the replica has caught up, then the replica takes over.
    let Loaded {
        load,
        probes,
        mut faults,
        in_flight,
    } = rig
        .load_until_fault("cfo", clients, Duration::from_secs(16))
        .await;
    let started = Instant::now();
    rig.cluster.failover(replica).await;
    faults.record(format!(
        "CLUSTER FAILOVER on replica {replica} of master {target} (slot {slot}, partitions of {:?}; {in_flight} commits in flight)",
        groups.0
    ));
    let promoted = rig
        .cluster
        .wait_slot_moved_from(slot, target, Duration::from_secs(20))
        .await;
    let redis_took = started.elapsed();
    faults.note(format!("{promoted} serves slot {slot}"));
    rig.cluster.wait_healthy(Duration::from_secs(30)).await;
    faults.note("cluster ok");
    let probes = probes.await.expect("the probes");
    let gaps = gaps(
        &mut faults,
        &probes,
        (&groups.0, &groups.1),
        started,
        started + Duration::from_secs(9),
    );
    let outcome = load.finish().await;

    // Assert
    check_and_report(test, &mut rig, &faults, &outcome, gaps).await;
    assert_eq!(promoted, replica, "{test}: another node took the slot");
    assert_gaps(test, gaps, redis_took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_slots_migrated_under_load() {
    slots_migrated("cluster_slots_migrated_under_load", CLIENTS).await;
}

async fn slots_migrated(test: &str, clients: usize) {
    // Arrange
    let mut rig = Rig::start().await;
    let source = rig.target().await;
    let groups = rig.split_by_master(source).await;
    // The slots of the hot SKUs' partition and of every probed SKU's on the
    // same master: they hold stock under contention.
    let mut moved_skus = vec!["HOT-0".to_owned()];
    moved_skus.extend(groups.0.iter().cloned());
    let mut slots = Vec::new();
    for sku in &moved_skus {
        let slot = rig.cluster.keyslot(&rig.key_of(sku)).await;
        assert_eq!(rig.cluster.master_of_slot(slot).await, source);
        if !slots.contains(&slot) {
            slots.push(slot);
        }
    }
    let dest = *rig
        .cluster
        .masters()
        .await
        .iter()
        .find(|m| **m != source)
        .expect("another master");

    // Act: each slot moved to another master and back, keys MIGRATEd 100
    // at a time (`redis-cli --cluster reshard --cluster-pipeline 100`; each
    // batch here also starts two redis-cli processes, so 10 a time made a
    // slot of ~1 500 keys take 5 s, during which its partition's scripts
    // wait or refuse) with a pause between batches, while the clients buy.
    let plan = LoadPlan::new("cmig", clients, Duration::from_secs(24), &rig.catalogue);
    let load = Load::start(plan, vec![rig.service.url()]);
    let probes = probe_each(rig.service.url(), rig.probed(), Duration::from_secs(22));
    let mut faults = Faults::new();
    let mut errors = Vec::new();
    faults.until(Duration::from_secs(4)).await;
    let started = Instant::now();
    for (from, to) in [(source, dest), (dest, source)] {
        for &slot in &slots {
            let began = Instant::now();
            faults.record(format!(
                "slot {slot} migrating from {from} to {to} (partitions of {moved_skus:?})"
            ));
            match rig
                .cluster
                .migrate_slot(slot, from, to, 100, Duration::from_millis(10))
                .await
            {
                Ok(keys) => faults.note(format!(
                    "slot {slot} now on {to}: {keys} keys moved in {:.2} s",
                    began.elapsed().as_secs_f64()
                )),
                Err(e) => {
                    faults.note(format!("slot {slot}: migration failed: {e}"));
                    errors.push(e);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let ended = Instant::now();
    let probes = probes.await.expect("the probes");
    // The migration's stretch, and 2 s after it.
    let to = (ended + Duration::from_secs(2)).min(started + Duration::from_secs(18));
    let gaps = gaps(&mut faults, &probes, (&groups.0, &groups.1), started, to);
    let outcome = load.finish().await;

    // Assert
    check_and_report(test, &mut rig, &faults, &outcome, gaps).await;
    assert!(errors.is_empty(), "{test}: migrations failed: {errors:?}");
    // The slot moves are the test's own steps: the 5 s goal applies.
    assert_gaps(test, gaps, Duration::ZERO);
}
