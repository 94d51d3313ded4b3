//! Back in seconds, never a wrong answer: the first run on a Redis that was
//! never rebuilt, the rebuild lease after restarts, answers to commits
//! retried after Redis lost its last writes, and what a timed-out Redis
//! call tells the client.

use crate::faults::{Proxy, TestRedis};
use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use stockhold::configuration::Settings;

/// Runs the `stockhold` binary with `args` on the Redis and database of
/// `settings`, as `scripts/run.sh` does.
async fn run_binary(settings: &Settings, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockhold"));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("STOCKHOLD_REDIS__URL", &settings.redis.url)
        .env(
            "STOCKHOLD_REDIS__CLUSTER",
            settings.redis.cluster.to_string(),
        )
        .env("STOCKHOLD_REDIS__KEY_PREFIX", &settings.redis.key_prefix)
        .env(
            "STOCKHOLD_REDIS__PARTITIONS",
            settings.redis.partitions.to_string(),
        )
        .env("STOCKHOLD_DATABASE__URL", &settings.database.url)
        .env("STOCKHOLD_TELEMETRY__FILTER", "warn")
        .env_remove("RUST_LOG");
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the stockhold binary runs")
}

fn assert_succeeded(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls a reserve of one unit of `sku` (released again at once) until it
/// is held; how long that took, or None after `within`.
async fn first_write_within(app: &TestApp, sku: &str, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        let res = app
            .reserve(json!({ "lines": [{ "sku": sku, "qty": 1 }] }))
            .await;
        if res.status() == 201 {
            let id = res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(app.release(&id).await.status(), 200);
            return Some(started.elapsed());
        }
        assert_eq!(res.status(), 503, "{}", res.text().await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Sends `send` again while it answers 503 (Redis being rebuilt), up to
/// 20 s; the first other answer.
async fn once_not_503<F, Fut>(mut send: F) -> Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let started = Instant::now();
    loop {
        let res = send().await;
        if res.status() != 503 || started.elapsed() > Duration::from_secs(20) {
            return res;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn demo_data_and_reconcile_run_on_a_redis_that_was_never_rebuilt() {
    // Arrange: a new database and key prefix, no service ever started on them.
    let settings = test_settings().await;

    // Act
    let demo = run_binary(&settings, &["demo-data"]).await;
    let again = run_binary(&settings, &["demo-data"]).await;
    let reconcile = run_binary(&settings, &["reconcile"]).await;

    // Assert
    assert_succeeded("stockhold demo-data", &demo);
    assert_succeeded("stockhold demo-data (again)", &again);
    assert_succeeded("stockhold reconcile", &reconcile);
    let report = String::from_utf8_lossy(&reconcile.stdout);
    assert!(report.contains("checked 6 SKUs"), "{report}");
    assert!(report.contains(": 0 drifted"), "{report}");
    let app = spawn_app_on(settings).await;
    let mug = app.sku("MUG-LOGO").await;
    assert_eq!(
        (mug["on_hand"].as_i64(), mug["held"].as_i64()),
        (Some(500), Some(0))
    );
}

#[tokio::test]
async fn writes_resume_within_seconds_when_redis_restarts_right_after_a_rebuild() {
    // Arrange: the app rebuilt this new Redis when it started, a moment ago.
    let mut redis = TestRedis::start_persistent().await;
    let app = spawn_app_with(|s| own_redis(s, redis.url())).await;
    app.create_sku("A", 10).await;

    // Act: reserve (and release) one unit after another for 6 s after
    // Redis answers again; the app must notice the restart and rebuild.
    redis.restart().await;
    let started = Instant::now();
    let mut answers = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        let res = app
            .reserve(json!({ "lines": [{ "sku": "A", "qty": 1 }] }))
            .await;
        let status = res.status().as_u16();
        if status == 201 {
            let id = res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(app.release(&id).await.status(), 200);
        }
        answers.push((started.elapsed(), status));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: refusals (while rebuilding) end within 3 s; every answer is
    // a 201 or a 503.
    assert!(
        answers.iter().all(|(_, s)| *s == 201 || *s == 503),
        "{answers:?}"
    );
    let last_refused = answers
        .iter()
        .rev()
        .find(|(_, s)| *s == 503)
        .map(|(t, _)| *t);
    assert!(
        last_refused.is_none_or(|t| t < Duration::from_secs(3)),
        "writes refused until {last_refused:?} after Redis answered again"
    );
    assert_eq!(app.counts("A").await, (10, 0, 10));
}

#[tokio::test]
async fn the_same_instance_rebuilds_again_at_once() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    // The ready marker of the partition of A.
    let keys = app.stock.engine.keys();
    let ready = keys
        .part(keys.of_sku(&stockhold::domain::Sku::parse("A").unwrap()))
        .ready();
    let mut redis = app.redis().await;

    for round in 0..2 {
        // Act: the ready marker is gone (data lost), twice in a row.
        let _: () = redis::cmd("DEL")
            .arg(&ready)
            .query_async(&mut redis)
            .await
            .unwrap();
        let back = first_write_within(&app, "A", Duration::from_secs(15)).await;

        // Assert
        let back = back.unwrap_or_else(|| panic!("round {round}: not rebuilt within 15 s"));
        assert!(
            back < Duration::from_secs(3),
            "round {round}: writes resumed after {back:?}"
        );
    }
}

#[tokio::test]
async fn a_rebuilder_that_died_holding_the_lease_delays_the_others_only_briefly() {
    // Arrange: another instance took the lease, marked Redis not ready and
    // died before finishing; its lease runs out by itself.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let keys = app.stock.engine.keys();
    let keys = keys.part(keys.of_sku(&stockhold::domain::Sku::parse("A").unwrap()));
    let lease = stockhold::reconciler::REBUILD_LEASE;
    let mut redis = app.redis().await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(keys.rebuild_lock())
        .arg("instance-that-died")
        .arg("PX")
        .arg(lease.as_millis() as u64)
        .ignore()
        .cmd("DEL")
        .arg(keys.ready())
        .ignore()
        .query_async(&mut redis)
        .await
        .unwrap();

    // Act
    let back = first_write_within(&app, "A", Duration::from_secs(20)).await;

    // Assert
    let back = back.expect("still refusing writes 20 s after the rebuilder died");
    assert!(
        back < lease + Duration::from_secs(3) && lease <= Duration::from_secs(10),
        "writes resumed after {back:?} (lease {lease:?})"
    );
}

/// A sale is made with idempotency keys; then Redis comes back from its AOF
/// without what was written after `lose_from` ("before reserve" or "after
/// reserve"), possibly with the service restarted meanwhile. The retried
/// commit (same key, same body) must answer the order that is in Postgres.
async fn commit_retried_after_redis_lost(lose: &str, service_restarted: bool) {
    // Arrange
    let mut redis = TestRedis::start_persistent().await;
    let mut app = spawn_app_with(|s| own_redis(s, redis.url())).await;
    app.create_sku("A", 10).await;
    let before_reserve = redis.aof_end();
    let reserve_body = json!({ "lines": [{ "sku": "A", "qty": 2 }], "ttl_seconds": 1 });
    let res = app
        .keyed(Method::POST, "/v1/reservations", "reserve-1", reserve_body)
        .await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let after_reserve = redis.aof_end();
    let commit_path = format!("/v1/reservations/{id}/commit");
    let commit = || app.keyed(Method::POST, &commit_path, "commit-1", json!({}));
    let res = commit().await;
    assert_eq!(res.status(), 201);
    let order: Value = res.json().await.unwrap();

    // Act: Redis loses the last writes; the hold's TTL runs out meanwhile.
    let settings = app.settings.clone();
    if service_restarted {
        app.begin_shutdown();
        app.stopped().await.unwrap();
    }
    redis.kill();
    redis.cut_aof_to(match lose {
        "before reserve" => &before_reserve,
        _ => &after_reserve,
    });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    redis.restart().await;
    if service_restarted {
        app = spawn_app_on(settings).await;
    }
    let commit = || app.keyed(Method::POST, &commit_path, "commit-1", json!({}));
    let retried = once_not_503(commit).await;

    // Assert
    let case = format!("lost {lose}, service restarted: {service_restarted}");
    assert_eq!(
        retried.status(),
        200,
        "{case}: {}",
        retried.text().await.unwrap()
    );
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["order_id"], order["order_id"], "{case}");
    assert_eq!(
        retried["lines"],
        json!([{ "sku": "A", "qty": 2, "returned_qty": 0 }])
    );
    let res = app.get_reservation(&id).await;
    assert_eq!(res.status(), 200, "{case}");
    let reservation: Value = res.json().await.unwrap();
    assert_eq!(reservation["status"], "committed", "{case}");
    let (orders,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(orders, 1, "{case}");
    let settled = app
        .eventually(Duration::from_secs(10), || async {
            app.counts("A").await == (8, 0, 8)
        })
        .await;
    assert!(settled, "{case}: counts {:?}", app.counts("A").await);
    let drift = app
        .reconcile(json!({}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(drift["drifted"], json!([]), "{case}");
}

#[tokio::test]
async fn a_commit_retried_after_redis_lost_the_hold_answers_the_order() {
    commit_retried_after_redis_lost("before reserve", false).await;
}

#[tokio::test]
async fn a_commit_retried_after_redis_lost_the_sale_answers_the_order() {
    commit_retried_after_redis_lost("after reserve", false).await;
}

#[tokio::test]
async fn a_commit_retried_on_a_new_instance_after_redis_lost_the_sale_answers_the_order() {
    commit_retried_after_redis_lost("after reserve", true).await;
}

#[tokio::test]
async fn a_commit_retried_on_a_new_instance_after_redis_lost_the_hold_answers_the_order() {
    commit_retried_after_redis_lost("before reserve", true).await;
}

#[tokio::test]
async fn a_redis_call_that_times_out_says_the_outcome_is_unknown() {
    // Arrange: the app reaches Redis through a proxy that will hold every
    // command for a second, three times longer than the app waits.
    let redis = TestRedis::start().await;
    let proxy = Proxy::start(([127, 0, 0, 1], redis.port).into()).await;
    let app = spawn_app_with(|s| {
        own_redis(s, format!("redis://127.0.0.1:{}/", proxy.port));
        s.redis.call_timeout_ms = 300;
    })
    .await;
    app.create_sku("A", 10).await;
    // The reserve script is in Redis's script cache: otherwise the delayed
    // answer is NOSCRIPT, and the script is never sent again.
    let warm_up = app.hold(&[("A", 1)]).await;
    assert_eq!(app.release(&warm_up).await.status(), 200);
    proxy.slow_down(1000);

    // Act
    let without_key = app
        .reserve(json!({ "lines": [{ "sku": "A", "qty": 2 }] }))
        .await;
    let with_key = app
        .keyed(
            Method::POST,
            "/v1/reservations",
            "k-1",
            json!({ "lines": [{ "sku": "A", "qty": 3 }] }),
        )
        .await;

    // Assert: the script ran once Redis went on; the client was told that
    // it might have, and a retry with the same key is safe. The keyed
    // request never got past claiming its key: nothing of it ran, and the
    // claim does not block the retry.
    let body = assert_problem(without_key, 503, "outcome_unknown").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("Idempotency-Key"), "{detail}");
    assert_problem(with_key, 503, "unavailable").await;
    proxy.slow_down(0);
    let held = app
        .eventually(Duration::from_secs(10), || async {
            let res = app.get_sku("A").await;
            res.status() == 200 && res.json::<Value>().await.unwrap()["held"] == 2
        })
        .await;
    assert!(
        held,
        "the timed-out reserve ran: {:?}",
        app.counts("A").await
    );
    // The late claim of the timed-out request is taken back within
    // moments (a retry meanwhile hears "still in progress").
    let started = Instant::now();
    let retried = loop {
        let res = app
            .keyed(
                Method::POST,
                "/v1/reservations",
                "k-1",
                json!({ "lines": [{ "sku": "A", "qty": 3 }] }),
            )
            .await;
        if res.status() != 409 || started.elapsed() > Duration::from_secs(3) {
            break res;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(retried.status(), 201, "{}", retried.text().await.unwrap());
    let again = app
        .keyed(
            Method::POST,
            "/v1/reservations",
            "k-1",
            json!({ "lines": [{ "sku": "A", "qty": 3 }] }),
        )
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(app.counts("A").await, (10, 5, 5));
}

/// Every key of a partition (`base`*) with its value, as DUMP gives it.
async fn save_partition(app: &TestApp, base: &str) -> Vec<(String, Vec<u8>)> {
    let redis = &mut app.redis().await;
    let keys = app.redis_keys(&format!("{base}*")).await;
    let mut saved = Vec::new();
    for key in keys {
        let value: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(redis)
            .await
            .unwrap();
        saved.push((key, value));
    }
    saved
}

/// Puts a partition back as `save_partition` saw it: what was written since
/// is gone, as from a Redis that restarted without its last writes.
async fn restore_partition(app: &TestApp, base: &str, saved: &[(String, Vec<u8>)]) {
    let redis = &mut app.redis().await;
    let keys = app.redis_keys(&format!("{base}*")).await;
    for key in keys {
        let _: () = redis::cmd("DEL").arg(key).query_async(redis).await.unwrap();
    }
    for (key, value) in saved {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(value.as_slice())
            .arg("REPLACE")
            .query_async(redis)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_sale_that_reaches_the_ledger_after_the_rebuild_read_it_is_sold_in_redis_too() {
    // Arrange: a hold of 2 of A, and Redis's state before its commit.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let id = app.hold(&[("A", 2)]).await;
    let id = stockhold::domain::ReservationId::parse(&id).unwrap();
    let keys = app.stock.engine.keys();
    let part = keys.part(keys.of_sku(&stockhold::domain::Sku::parse("A").unwrap()));
    let mut redis = app.redis().await;
    let saved = save_partition(&app, part.base()).await;

    // Act: the commit runs in Redis; Redis comes back without it (a ready
    // marker of another server run: it restarted) and is rebuilt before the
    // commit's entry reaches Postgres, as when the group commit waited on
    // Postgres meanwhile.
    let order = stockhold::domain::OrderId::for_reservation(&id);
    let committed = app.stock.engine.commit(&id, &order, None).await.unwrap();
    restore_partition(&app, part.base(), &saved).await;
    let _: () = redis::cmd("SET")
        .arg(part.ready())
        .arg("a-server-run-before-the-restart")
        .query_async(&mut redis)
        .await
        .unwrap();
    let reconciler =
        stockhold::reconciler::Reconciler::new(app.stock.engine.clone(), app.stock.ledger.clone());
    reconciler.ensure_rebuilt("test").await.unwrap();
    assert_eq!(
        app.counts("A").await,
        (10, 2, 8),
        "rebuilt without the sale"
    );
    app.stock.ledger.record(&committed.outbox).await.unwrap();

    // Assert: within seconds Redis has the sale the ledger has.
    let settled = app
        .eventually(Duration::from_secs(5), || async {
            app.counts("A").await == (8, 0, 8)
        })
        .await;
    assert!(settled, "A is {:?} in Redis", app.counts("A").await);
    assert_eq!(app.persisted_on_hand("A").await, Some(8));
    let res = app.get_reservation(id.as_str()).await;
    let hold: Value = res.json().await.unwrap();
    assert_eq!(hold["status"], "committed", "{hold}");
}

#[tokio::test]
async fn a_sale_whose_hold_redis_lost_too_reaches_redis_after_the_rebuild() {
    // Arrange: Redis's state before the hold is made. No drain runs on its
    // own: the commit's entry must reach Postgres only after the rebuild.
    let app = spawn_app_with(|s| s.reconciler.drain_interval_ms = 3_600_000).await;
    app.create_sku("A", 10).await;
    let keys = app.stock.engine.keys();
    let part = keys.part(keys.of_sku(&stockhold::domain::Sku::parse("A").unwrap()));
    let mut redis = app.redis().await;
    let saved = save_partition(&app, part.base()).await;

    // Act: a hold and its commit run in Redis; Redis comes back without
    // either and is rebuilt before the commit's entry reaches Postgres.
    let id = app.hold(&[("A", 3)]).await;
    let id = stockhold::domain::ReservationId::parse(&id).unwrap();
    let order = stockhold::domain::OrderId::for_reservation(&id);
    let committed = app.stock.engine.commit(&id, &order, None).await.unwrap();
    restore_partition(&app, part.base(), &saved).await;
    let _: () = redis::cmd("SET")
        .arg(part.ready())
        .arg("a-server-run-before-the-restart")
        .query_async(&mut redis)
        .await
        .unwrap();
    let reconciler =
        stockhold::reconciler::Reconciler::new(app.stock.engine.clone(), app.stock.ledger.clone());
    reconciler.ensure_rebuilt("test").await.unwrap();
    assert_eq!(
        app.counts("A").await,
        (10, 0, 10),
        "rebuilt without the sale"
    );
    app.stock.ledger.record(&committed.outbox).await.unwrap();

    // Assert: within seconds Redis has the sale the ledger has.
    let caught_up = app
        .eventually(Duration::from_secs(5), || async {
            app.counts("A").await == (7, 0, 7)
        })
        .await;
    assert!(caught_up, "A is {:?} in Redis", app.counts("A").await);
    assert_eq!(app.persisted_on_hand("A").await, Some(7));
}
