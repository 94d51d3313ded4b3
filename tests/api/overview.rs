//! The admin console's own calls: `GET /v1/admin/overview` and
//! `GET /v1/skus/{sku}/holds`.

use crate::helpers::{assert_problem, body_of, spawn_app, spawn_app_with, ADMIN, STOREFRONT};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn the_overview_counts_skus_live_holds_and_the_outbox_lag() {
    // Arrange: two SKUs (one with a channel's allocation, not a SKU of its
    // own), three live single-SKU holds, one of them then sold; no drain
    // passes the entries the calls recorded themselves.
    let app = spawn_app_with(|s| s.reconciler.drain_interval_ms = 3_600_000).await;
    app.create_sku("A", 10).await;
    body_of(
        app.put_sku("B", json!({ "on_hand": 10, "allocations": { "web": 2 } }))
            .await,
        201,
    )
    .await;
    let ids = [
        app.hold(&[("A", 1)]).await,
        app.hold(&[("A", 2)]).await,
        app.hold(&[("B", 1)]).await,
    ];
    body_of(app.commit(&ids[0], json!({})).await, 201).await;

    // Act
    let res = app
        .request(Method::GET, "/v1/admin/overview", Some(ADMIN), None)
        .await;

    // Assert
    let o = body_of(res, 200).await;
    assert_eq!(o["skus"], 2, "{o}");
    assert_eq!(o["live_holds"], 2, "{o}");
    assert_eq!(o["outbox_lag_ms"], 0, "every change is in Postgres: {o}");
    assert_eq!(o["not_persisted_per_minute"], json!([]), "{o}");
    assert_eq!(o["partitions"], app.settings.redis.partitions, "{o}");

    // Act: the sale's entry is taken out of the ledger's record, as if
    // Postgres had not taken it, a while later.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let forgotten = sqlx::query(
        "DELETE FROM outbox_applied WHERE (partition, stream_ms, stream_seq) IN
           (SELECT partition, stream_ms, stream_seq FROM outbox_applied
            ORDER BY stream_ms DESC, stream_seq DESC LIMIT 1)",
    )
    .execute(app.db())
    .await
    .unwrap();
    assert_eq!(forgotten.rows_affected(), 1);
    let res = app
        .request(Method::GET, "/v1/admin/overview", Some(ADMIN), None)
        .await;

    // Assert: its age is the lag.
    let o = body_of(res, 200).await;
    let lag = o["outbox_lag_ms"].as_i64().unwrap();
    assert!((300..60_000).contains(&lag), "{o}");
}

#[tokio::test]
async fn the_outbox_lag_is_found_past_the_first_page_of_entries() {
    // Arrange: 550 adjustments of one SKU, then 1.5 s later 50 more, each
    // recorded by its call, none passed by a drain; then one of the later
    // ones taken out of the ledger's record, 300 ms later.
    let app = spawn_app_with(|s| s.reconciler.drain_interval_ms = 3_600_000).await;
    app.create_sku("A", 10).await;
    for i in 0..600 {
        if i == 550 {
            tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
        }
        let body = json!({ "adjustment_id": format!("adj-{i}"), "delta": 1 });
        let res = app
            .request(
                Method::POST,
                "/v1/skus/A/adjustments",
                Some(ADMIN),
                Some(body),
            )
            .await;
        body_of(res, 201).await;
    }
    let o = body_of(overview(&app).await, 200).await;
    assert_eq!(o["outbox_lag_ms"], 0, "every change is in Postgres: {o}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let forgotten = sqlx::query(
        "DELETE FROM outbox_applied WHERE (partition, stream_ms, stream_seq) IN
           (SELECT partition, stream_ms, stream_seq FROM outbox_applied
            ORDER BY stream_ms, stream_seq OFFSET 560 LIMIT 1)",
    )
    .execute(app.db())
    .await
    .unwrap();
    assert_eq!(forgotten.rows_affected(), 1);

    // Act
    let o = body_of(overview(&app).await, 200).await;

    // Assert: the walk went on past the first 500 entries (all older than
    // 1.8 s) to find it.
    let lag = o["outbox_lag_ms"].as_i64().unwrap();
    assert!((300..1_500).contains(&lag), "{o}");
}

async fn overview(app: &crate::helpers::TestApp) -> reqwest::Response {
    app.request(Method::GET, "/v1/admin/overview", Some(ADMIN), None)
        .await
}

#[tokio::test]
async fn the_overview_is_for_admins_and_takes_no_parameters() {
    let app = spawn_app().await;
    let res = app
        .request(Method::GET, "/v1/admin/overview", None, None)
        .await;
    assert_problem(res, 401, "unauthorized").await;
    let res = app
        .request(Method::GET, "/v1/admin/overview", Some(STOREFRONT), None)
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app
        .request(Method::GET, "/v1/admin/overview?x=1", Some(ADMIN), None)
        .await;
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "x");
}

async fn holds_on(app: &crate::helpers::TestApp, query: &str) -> reqwest::Response {
    app.request(Method::GET, &format!("/v1/skus/{query}"), Some(ADMIN), None)
        .await
}

#[tokio::test]
async fn a_skus_live_holds_are_listed_soonest_to_expire_first() {
    // Arrange: holds of A with different TTLs, one basket with B too, one
    // released, one sold, one of B only.
    let app = spawn_app().await;
    app.create_sku("A", 100).await;
    app.create_sku("B", 100).await;
    let reserve = |lines: Value, ttl: i64, customer: &str| json!({ "lines": lines, "ttl_seconds": ttl, "customer_id": customer, "channel": "web" });
    let mut ids = Vec::new();
    for (lines, ttl, customer) in [
        (json!([{ "sku": "A", "qty": 2 }]), 600, "c-late"),
        (
            json!([{ "sku": "B", "qty": 5 }, { "sku": "A", "qty": 3 }]),
            60,
            "c-soon",
        ),
        (json!([{ "sku": "A", "qty": 1 }]), 300, "c-released"),
        (json!([{ "sku": "A", "qty": 4 }]), 300, "c-sold"),
        (json!([{ "sku": "B", "qty": 1 }]), 30, "c-b"),
    ] {
        let res = app.reserve(reserve(lines, ttl, customer)).await;
        ids.push(body_of(res, 201).await["id"].as_str().unwrap().to_owned());
    }
    body_of(app.release(&ids[2]).await, 200).await;
    body_of(app.commit(&ids[3], json!({})).await, 201).await;

    // Act
    let page = body_of(holds_on(&app, "A/holds").await, 200).await;

    // Assert
    let listed: Vec<(&str, i64, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap(),
                h["qty"].as_i64().unwrap(),
                h["customer_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            (ids[1].as_str(), 3, "c-soon"),
            (ids[0].as_str(), 2, "c-late")
        ],
        "{page}"
    );
    let first = &page["items"][0];
    assert_eq!(first["status"], "held");
    assert_eq!(first["channel"], "web");
    assert!(
        first["expires_at"].as_str().unwrap() < page["items"][1]["expires_at"].as_str().unwrap()
    );
    assert_eq!(page["complete"], true);

    // `limit` keeps the soonest.
    let page = body_of(holds_on(&app, "A/holds?limit=1").await, 200).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], ids[1].as_str());
}

#[tokio::test]
async fn holds_of_an_unknown_sku_or_with_a_bad_limit_are_refused() {
    let app = spawn_app().await;
    app.create_sku("A", 1).await;
    assert_problem(holds_on(&app, "NOPE/holds").await, 404, "not_found").await;
    for bad in ["0", "501", "x"] {
        let res = holds_on(&app, &format!("A/holds?limit={bad}")).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], "limit", "{bad}");
    }
    let res = holds_on(&app, "A/holds?cursor=1").await;
    assert_problem(res, 422, "validation_failed").await;
    let res = app
        .request(Method::GET, "/v1/skus/A/holds", Some(STOREFRONT), None)
        .await;
    assert_problem(res, 403, "forbidden").await;
}
