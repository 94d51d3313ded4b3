//! A flash sale: 10 000 buyers open their connections in the same instant
//! for 100 units of one SKU. Exactly 100 are sold, every buyer is answered.

use crate::helpers::*;
use futures_util::future::join_all;
use rlimit::Resource;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;

const BUYERS: usize = 10_000;
const UNITS: i64 = 100;
/// Buyers sharing one HTTP client (and its connection pool).
const BUYERS_PER_CLIENT: usize = 100;
/// Longest a buyer waits for either answer.
const PATIENCE: Duration = Duration::from_secs(50);

/// Both ends of every connection live in this process: ideally room for
/// both ends of all of them at once.
const FILES_WANTED: u64 = 2 * BUYERS as u64 + 2_000;
/// At least every buyer's socket, plus the server's side of the connections
/// it is answering (each closed once answered), pools and the runtime.
const FILES_NEEDED: u64 = BUYERS as u64 + 5_000;

/// Raises the open-file limit towards `wanted` (the hard limit too, where
/// the process may); returns the soft limit in force.
fn raise_open_file_limit(wanted: u64) -> u64 {
    let (soft, hard) = Resource::NOFILE.get().expect("read RLIMIT_NOFILE");
    if soft >= wanted {
        return soft;
    }
    if hard < wanted && Resource::NOFILE.set(wanted, wanted).is_ok() {
        return wanted;
    }
    rlimit::increase_nofile_limit(wanted).expect("raise RLIMIT_NOFILE")
}

/// Open file descriptors of this process, sampled until `stop`; the peak.
async fn peak_open_files(stop: Arc<AtomicBool>) -> usize {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            peak = peak.max(dir.count());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak
}

/// What one buyer saw: the reserve answer (status, code) and, if it held
/// the unit, the commit status; or the transport error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Answered {
        reserve: u16,
        code: String,
        commit: Option<u16>,
    },
    Failed(String),
}

async fn buy(client: reqwest::Client, base: String, buyer: usize, start: Arc<Barrier>) -> Outcome {
    start.wait().await;
    let res = client
        .post(format!("{base}/v1/reservations"))
        .bearer_auth(STOREFRONT)
        .json(
            &json!({ "lines": [{ "sku": "FLASH", "qty": 1 }], "customer_id": format!("b{buyer}") }),
        )
        .send()
        .await;
    let res = match res {
        Ok(res) => res,
        Err(e) => return Outcome::Failed(format!("reserve: {:?}", e.without_url())),
    };
    let reserve = res.status().as_u16();
    let body: Value = match res.json().await {
        Ok(body) => body,
        Err(e) => {
            let e = format!("{:?}", e.without_url());
            return Outcome::Failed(format!("reserve answered {reserve}, body unreadable: {e}"));
        }
    };
    let code = body["code"].as_str().unwrap_or("").to_owned();
    if reserve != 201 {
        return Outcome::Answered {
            reserve,
            code,
            commit: None,
        };
    }
    let id = body["id"].as_str().unwrap_or("");
    let commit = client
        .post(format!("{base}/v1/reservations/{id}/commit"))
        .bearer_auth(STOREFRONT)
        .json(&json!({ "order_id": format!("flash-{buyer}") }))
        .send()
        .await;
    match commit {
        Ok(res) => Outcome::Answered {
            reserve,
            code,
            commit: Some(res.status().as_u16()),
        },
        Err(e) => Outcome::Failed(format!("commit: {:?}", e.without_url())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_at_once_for_a_hundred_units_buy_exactly_a_hundred() {
    // Arrange
    let files = raise_open_file_limit(FILES_WANTED);
    assert!(
        files >= FILES_NEEDED,
        "the flash sale needs {FILES_NEEDED} open files ({BUYERS} connections); \
         the limit is {files}: raise `ulimit -n`"
    );
    let app = spawn_app_with(|s| {
        // Under 10 000 connections at once on a loaded machine a commit may
        // wait for a Postgres connection longer than the usual 2 s before it
        // would answer 202 instead of 201.
        s.database.acquire_timeout_ms = 15_000;
        // The buyers' ends of the connections live in this process too: the
        // server takes at most this many at once (the rest wait in the
        // backlog), so that both ends fit in the open-file limit.
        s.application.max_connections = (files as usize).saturating_sub(BUYERS + 2_000);
    })
    .await;
    app.create_sku("FLASH", UNITS).await;
    let clients: Vec<reqwest::Client> = (0..BUYERS.div_ceil(BUYERS_PER_CLIENT))
        .map(|_| {
            // No idle connections kept: each answer closes its connection, so
            // every buyer opens its own, and the server's side is freed.
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(PATIENCE)
                .build()
                .unwrap()
        })
        .collect();
    let start = Arc::new(Barrier::new(BUYERS + 1));

    // Act: every buyer waits at the barrier, then all connect at once.
    let buyers: Vec<_> = (0..BUYERS)
        .map(|i| {
            let client = clients[i / BUYERS_PER_CLIENT].clone();
            let (base, start) = (app.address.clone(), start.clone());
            tokio::spawn(buy(client, base, i, start))
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(peak_open_files(stop.clone()));
    start.wait().await;
    let began = Instant::now();
    let outcomes: Vec<Outcome> = join_all(buyers)
        .await
        .into_iter()
        .map(|r| r.expect("buyer task"))
        .collect();
    let took = began.elapsed();
    stop.store(true, Ordering::Relaxed);
    let peak_files = sampler.await.unwrap();

    // Assert
    let mut tally: BTreeMap<Outcome, usize> = BTreeMap::new();
    for o in &outcomes {
        let key = match o {
            Outcome::Failed(e) => Outcome::Failed(e.chars().take(400).collect()),
            answered => answered.clone(),
        };
        *tally.entry(key).or_default() += 1;
    }
    println!(
        "flash sale: {BUYERS} buyers, {UNITS} units, answered in {took:.2?} \
         (open-file limit {files}, peak {peak_files} open): {tally:#?}"
    );
    let sold = Outcome::Answered {
        reserve: 201,
        code: String::new(),
        commit: Some(201),
    };
    let out_of_stock = Outcome::Answered {
        reserve: 409,
        code: "insufficient_stock".into(),
        commit: None,
    };
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .count();
    assert_eq!(failed, 0, "every request is answered: {tally:#?}");
    let server_errors = outcomes
        .iter()
        .filter(|o| {
            matches!(o, Outcome::Answered { reserve, commit, .. }
                if *reserve >= 500 || commit.is_some_and(|c| c >= 500))
        })
        .count();
    assert_eq!(server_errors, 0, "no 5xx: {tally:#?}");
    assert_eq!(tally.get(&sold), Some(&(UNITS as usize)), "{tally:#?}");
    assert_eq!(
        tally.get(&out_of_stock),
        Some(&(BUYERS - UNITS as usize)),
        "{tally:#?}"
    );
    let live = app.live_counts("FLASH").await;
    assert_eq!(live, (Some(0), Some(0)), "Redis on_hand and held");
    let (orders, lines, units): (i64, i64, Option<i64>) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders), count(*), sum(qty)::bigint
         FROM order_lines WHERE sku = 'FLASH'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((orders, lines, units), (UNITS, UNITS, Some(UNITS)));
    assert_eq!(app.persisted_on_hand("FLASH").await, Some(0));
}
