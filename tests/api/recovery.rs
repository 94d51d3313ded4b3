//! Postgres down, Redis lost, rebuild and repair under load: no acknowledged
//! sale is lost, no unit is sold twice, and reconcile finds no drift after.

use crate::faults::{Proxy, TestRedis};
use crate::helpers::*;
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use stockhold::domain::ReconcileMode;
use stockhold::reconciler::Reconciler;

/// Routes the app's Postgres connections through a proxy the test can cut.
fn through(proxy: &Proxy, url: &str) -> String {
    let (_, db) = url.rsplit_once('/').unwrap();
    format!("postgres://stockhold@127.0.0.1:{}/{db}", proxy.port)
}

fn postgres_addr() -> SocketAddr {
    let url = std::env::var("STOCKHOLD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stockhold@127.0.0.1:5434/postgres".into());
    let host_port = url.split('@').nth(1).unwrap().split('/').next().unwrap();
    host_port.parse().unwrap()
}

async fn reconcile_dry_run(app: &TestApp) -> Value {
    let res = app
        .request(
            Method::POST,
            "/v1/admin/reconcile",
            Some(ADMIN),
            Some(json!({})),
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(app.db()).await.unwrap();
    n
}

#[tokio::test]
async fn with_postgres_down_commits_answer_202_and_reach_postgres_once_it_is_back() {
    // Arrange
    let proxy = Proxy::start(postgres_addr()).await;
    let app = spawn_app_with(|s| {
        s.database.url = through(&proxy, &s.database.url);
        s.database.acquire_timeout_ms = 300;
    })
    .await;
    app.create_sku("A", 100).await;
    let mut holds = Vec::new();
    for _ in 0..10 {
        holds.push(app.hold(&[("A", 3)]).await);
    }

    // Act: Postgres goes away in the middle of the commits.
    proxy.cut();
    let mut pending = Vec::new();
    for (i, id) in holds.iter().enumerate() {
        let res = app
            .commit(id, json!({ "order_id": format!("ord-{i}") }))
            .await;
        assert_eq!(res.status(), 202, "commit {i}");
        let order: Value = res.json().await.unwrap();
        assert_eq!(order["persisted"], false);
        pending.push(order);
    }
    // The pending orders are readable, and selling goes on meanwhile.
    let res = app.get_order("ord-3").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["persisted"], false);
    assert_eq!(body["lines"], pending[3]["lines"]);
    assert_eq!(app.counts("A").await, (70, 0, 70));
    let res = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(res.status(), 503);
    // The console's overview counts the 202s (after answering them), and
    // says what it cannot know.
    let overview = || async {
        let res = app
            .request(Method::GET, "/v1/admin/overview", Some(ADMIN), None)
            .await;
        body_of(res, 200).await
    };
    let answered_202 = |o: &Value| -> i64 {
        o["not_persisted_per_minute"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["count"].as_i64().unwrap())
            .sum()
    };
    let counted = app
        .eventually(Duration::from_secs(5), || async {
            answered_202(&overview().await) == 10
        })
        .await;
    let o = overview().await;
    assert!(counted, "{o}");
    assert!(o["skus"].is_null(), "{o}");
    assert!(o["outbox_lag_ms"].is_null(), "{o}");
    proxy.restore();

    // Assert: everything reaches Postgres, with per-SKU conservation.
    let drained = app
        .eventually(Duration::from_secs(10), || async {
            sqlx::query_as::<_, (i64,)>("SELECT count(*) FROM orders")
                .fetch_one(app.db())
                .await
                .is_ok_and(|(n,)| n == 10)
        })
        .await;
    assert!(drained, "orders did not reach Postgres");
    assert_eq!(
        count(&app, "SELECT on_hand FROM sku_stock WHERE sku = 'A'").await,
        70
    );
    assert_eq!(
        count(
            &app,
            "SELECT -sum(delta)::bigint FROM stock_movements WHERE kind = 'commit'"
        )
        .await,
        30
    );
    let body: Value = app.get_order("ord-3").await.json().await.unwrap();
    assert!(body.get("persisted").is_none(), "{body}");
    assert_eq!(reconcile_dry_run(&app).await["drifted"], json!([]));
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_rebuilt_and_no_acknowledged_sale_is_lost() {
    for lose in ["flushall", "restart without data"] {
        // Arrange: sales made, holds live, a customer at their limit.
        let mut redis = TestRedis::start().await;
        let app = spawn_app_with(|s| own_redis(s, redis.url())).await;
        app.create_sku("A", 100).await;
        let res = app
            .put_sku("LTD", json!({ "on_hand": 10, "per_customer_limit": 2 }))
            .await;
        assert_eq!(res.status(), 201);
        let sold = app.hold(&[("A", 5)]).await;
        assert_eq!(
            app.commit(&sold, json!({ "order_id": "ord-1" }))
                .await
                .status(),
            201
        );
        let res = app
            .reserve(json!({ "lines": [{ "sku": "LTD", "qty": 2 }], "customer_id": "c-1" }))
            .await;
        let limited: Value = res.json().await.unwrap();
        assert_eq!(
            app.commit(limited["id"].as_str().unwrap(), json!({}))
                .await
                .status(),
            201
        );
        let live_hold = app.hold(&[("A", 7)]).await;
        assert_eq!(app.counts("A").await, (95, 7, 88));

        // Act
        match lose {
            "flushall" => redis.flushall().await,
            _ => redis.restart_empty().await,
        }

        // Assert: rebuilt from the ledger; holds are gone, their units available.
        let rebuilt = app
            .eventually(Duration::from_secs(10), || async {
                app.get_sku("A").await.status() == 200
                    && app
                        .request(Method::GET, "/readyz", None, None)
                        .await
                        .status()
                        == 200
            })
            .await;
        assert!(rebuilt, "{lose}: not rebuilt");
        assert_eq!(app.counts("A").await, (95, 0, 95), "{lose}");
        assert_eq!(app.counts("LTD").await, (8, 0, 8), "{lose}");
        // The hold went with Redis's data: a clear 410, not an unknown id.
        let res = app.get_reservation(&live_hold).await;
        assert_problem(res, 410, "reservation_lost").await;
        assert_eq!(app.get_order("ord-1").await.status(), 200, "{lose}");
        // The customer's purchases still count against the limit.
        let res = app
            .reserve(json!({ "lines": [{ "sku": "LTD", "qty": 1 }], "customer_id": "c-1" }))
            .await;
        assert_problem(res, 409, "per_customer_limit_exceeded").await;
        assert_eq!(
            reconcile_dry_run(&app).await["drifted"],
            json!([]),
            "{lose}"
        );
    }
}

#[tokio::test]
async fn rebuild_and_repair_under_200_clients_leave_no_drift_and_sell_no_unit_twice() {
    // Arrange
    rlimit::increase_nofile_limit(10_000).unwrap();
    let app = spawn_app().await;
    let skus = ["S0", "S1", "S2", "S3", "S4"];
    for sku in skus {
        app.create_sku(sku, 3000).await;
    }
    let committed = Arc::new(AtomicUsize::new(0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);

    // Act: 200 clients reserve and commit (or release) while rebuild and
    // repair run over and over.
    let clients = join_all((0..200).map(|c| {
        let (app, committed) = (&app, committed.clone());
        async move {
            let mut i = 0;
            while tokio::time::Instant::now() < deadline && i < 50 {
                i += 1;
                let lines: Vec<Value> = (0..3)
                    .map(|k| json!({ "sku": skus[(c + i + k) % skus.len()], "qty": 1 }))
                    .collect();
                let res = app.reserve(json!({ "lines": lines })).await;
                match res.status().as_u16() {
                    201 => {}
                    409 => continue,
                    other => panic!("reserve answered {other}"),
                }
                let id = res.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let status = if (c + i) % 3 == 0 {
                    app.release(&id).await.status().as_u16()
                } else {
                    // 202: sold, Postgres too slow to answer in time on a
                    // loaded machine; the drain persists it.
                    let status = app.commit(&id, json!({})).await.status().as_u16();
                    if status == 201 || status == 202 {
                        committed.fetch_add(1, Ordering::SeqCst);
                    }
                    status
                };
                assert!([200, 201, 202].contains(&status), "answered {status}");
            }
        }
    }));
    let reconciler = Reconciler::new(app.stock.engine.clone(), app.stock.ledger.clone());
    let repairs = async {
        let mut runs = 0;
        while tokio::time::Instant::now() < deadline {
            // Counts kept by the scripts are right, so any drift found
            // under load would be the reconciliation miscounting.
            let rebuilt = reconciler.start_up("test-instance").await.unwrap().unwrap();
            assert_eq!(rebuilt.drifted, vec![], "rebuild under load");
            let repaired = reconciler
                .reconcile(ReconcileMode::Repair, None)
                .await
                .unwrap();
            assert_eq!(repaired.drifted, vec![], "repair under load");
            runs += 1;
        }
        runs
    };
    let (_, runs) = tokio::join!(clients, repairs);
    assert!(runs > 0);

    // Assert
    let drifted = reconcile_dry_run(&app).await["drifted"].clone();
    assert_eq!(drifted, json!([]));
    let sold = committed.load(Ordering::SeqCst) as i64 * 3;
    assert!(sold > 0);
    let mut live_total = 0;
    for sku in skus {
        let (on_hand, held, _) = app.counts(sku).await;
        assert_eq!(held, 0, "{sku}");
        live_total += on_hand;
    }
    assert_eq!(live_total + sold, 5 * 3000, "every unit sold once");
    let ok = app
        .eventually(Duration::from_secs(10), || async {
            count(
                &app,
                "SELECT coalesce(sum(qty), 0)::bigint FROM order_lines",
            )
            .await
                == sold
        })
        .await;
    assert!(ok, "Postgres has every sale");
    assert_eq!(
        count(&app, "SELECT sum(on_hand)::bigint FROM sku_stock").await,
        live_total
    );
    println!("{runs} rebuild+repair rounds under load; {sold} units sold");
}
