//! Operations: metrics, request ids, graceful shutdown.

use crate::faults::Proxy;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn metrics_are_prometheus_text_with_bounded_labels_and_no_key() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("SECRET-SKU-NAME", 1).await;
    let id = app.hold(&[("SECRET-SKU-NAME", 1)]).await;
    let res = app
        .reserve(json!({ "lines": [{ "sku": "SECRET-SKU-NAME", "qty": 1 }] }))
        .await;
    assert_eq!(res.status(), 409);
    assert_eq!(app.commit(&id, json!({})).await.status(), 201);
    // The outbox lag is known once the drain has been over every partition.
    let lag_known = app
        .eventually(Duration::from_secs(10), || async {
            let res = app.request(Method::GET, "/metrics", None, None).await;
            res.text()
                .await
                .unwrap()
                .contains("stockhold_outbox_lag_entries")
        })
        .await;
    assert!(lag_known, "no outbox lag in /metrics within 10 s");

    // Act
    let res = app.request(Method::GET, "/metrics", None, None).await;

    // Assert
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    for needle in [
        r#"stockhold_http_requests_total{route="/v1/reservations",method="POST",status="201"}"#,
        r#"route="/v1/reservations/{id}/commit""#,
        "stockhold_http_request_duration_seconds_bucket",
        "stockhold_reservations_created_total",
        "stockhold_reservations_committed_total",
        "stockhold_insufficient_stock_rejections_total",
        "stockhold_outbox_lag_entries",
        r#"stockhold_pool_connections{pool="redis",state="idle"}"#,
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(
        !text.contains("SECRET-SKU-NAME"),
        "a SKU leaked into a label"
    );
    assert!(!text.contains(&id), "a reservation id leaked into a label");
}

#[tokio::test]
async fn an_incoming_request_id_is_echoed_and_one_is_made_up_otherwise() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.address))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "req-abc-123");
    let res = app
        .request(Method::GET, "/v1/skus/NOPE", Some(ADMIN), None)
        .await;
    let made_up = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made_up.len(), 36, "a UUID: {made_up}");
}

#[tokio::test]
async fn a_commit_in_flight_at_shutdown_completes_and_then_the_server_stops() {
    // Arrange: Postgres answers slowly, so the commit is still persisting
    // when the shutdown signal arrives.
    let postgres = std::env::var("STOCKHOLD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stockhold@127.0.0.1:5434/postgres".into());
    let target = postgres
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let proxy = Proxy::start(target).await;
    let mut app = spawn_app_with(|s| {
        let db = s.database.url.rsplit_once('/').unwrap().1.to_owned();
        s.database.url = format!("postgres://stockhold@127.0.0.1:{}/{db}", proxy.port);
    })
    .await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 2)]).await;
    proxy.slow_down(150);

    // Act
    let commit = {
        let (client, url) = (
            app.client.clone(),
            format!("{}/v1/reservations/{id}/commit", app.address),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(STOREFRONT)
                .json(&json!({ "order_id": "ord-late" }))
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.begin_shutdown();
    let res = commit
        .await
        .unwrap()
        .expect("the in-flight commit is answered");

    // Assert
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let body: Value = res.json().await.unwrap_or_default();
    assert!(body.get("persisted").is_none());
    tokio::time::timeout(Duration::from_secs(10), app.stopped())
        .await
        .expect("stops within its shutdown timeout")
        .expect("stops cleanly");
    proxy.slow_down(0);
    let (orders,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM orders WHERE order_id = 'ord-late'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(orders, 1);
    let after = reqwest::Client::new()
        .get(format!("{}/healthz", app.address))
        .send()
        .await;
    assert!(after.is_err(), "the server still accepts connections");
}
