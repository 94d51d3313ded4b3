//! Stock adjustments (`POST /v1/skus/{sku}/adjustments`): relative changes of
//! `on_hand`, once per `adjustment_id`, never below what holds need, recorded
//! in Postgres and safe under concurrent sales.

use crate::helpers::*;
use crate::validation::{check_refusal, Expect, Failures, Snapshot};
use futures_util::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// The JSON body of `res`, asserting its status first.
use crate::helpers::body_of;

fn adjustment(id: &str, delta: i64) -> Value {
    json!({ "adjustment_id": id, "delta": delta, "reason": "receipt" })
}

#[tokio::test]
async fn an_adjustment_returns_201_with_the_sku_view_changed_by_delta() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 3)]).await;

    // Act
    let res = app.adjust("A", adjustment("rcv-889", 50)).await;

    // Assert
    let body = body_of(res, 201).await;
    assert_eq!(body, app.sku("A").await, "the answer is the SKU view");
    assert_eq!(body["sku"], "A");
    assert_eq!(app.counts("A").await, (60, 3, 57));
}

#[tokio::test]
async fn a_repeated_adjustment_answers_200_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let first = body_of(app.adjust("A", adjustment("rcv-1", 5)).await, 201).await;
    let before = Snapshot::take(&app, &["A"]).await;

    // Act
    let res = app.adjust("A", adjustment("rcv-1", 5)).await;

    // Assert
    assert_eq!(body_of(res, 200).await, first);
    before.unchanged(&app).await.unwrap();
    assert_eq!(app.counts("A").await, (15, 0, 15));
}

#[tokio::test]
async fn the_same_adjustment_id_with_a_different_delta_or_sku_is_409_idempotency_conflict() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 10).await;
    body_of(app.adjust("A", adjustment("rcv-1", 5)).await, 201).await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let other_delta = app.adjust("A", adjustment("rcv-1", 6)).await;
    let other_sku = app.adjust("B", adjustment("rcv-1", 5)).await;

    // Assert
    assert_problem(other_delta, 409, "idempotency_conflict").await;
    assert_problem(other_sku, 409, "idempotency_conflict").await;
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn a_negative_adjustment_below_what_is_held_is_409_insufficient_stock_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 4)]).await;
    let before = Snapshot::take(&app, &["A"]).await;

    // Act
    let res = app.adjust("A", adjustment("dmg-1", -7)).await;

    // Assert
    let problem = assert_problem(res, 409, "insufficient_stock").await;
    let shortages = problem["shortages"].as_array().expect("shortages listed");
    assert_eq!(shortages.len(), 1, "{problem}");
    assert_eq!(shortages[0]["sku"], "A", "{problem}");
    before.unchanged(&app).await.unwrap();
    assert_eq!(app.counts("A").await, (10, 4, 6));
}

#[tokio::test]
async fn a_negative_adjustment_down_to_exactly_what_is_held_is_allowed() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 4)]).await;

    // Act
    let res = app.adjust("A", adjustment("dmg-1", -6)).await;

    // Assert
    let body = body_of(res, 201).await;
    assert_eq!(body["on_hand"], 4);
    assert_eq!(body["held"], 4);
    assert_eq!(body["available"], 0);
}

#[tokio::test]
async fn an_adjustment_of_an_unknown_sku_is_404_not_found() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let before = Snapshot::take(&app, &["A"]).await;

    // Act
    let res = app.adjust("NOPE", adjustment("rcv-1", 5)).await;

    // Assert
    assert_problem(res, 404, "not_found").await;
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn only_admin_may_adjust() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let before = Snapshot::take(&app, &["A"]).await;

    for key in [STOREFRONT, CALLCENTRE] {
        // Act
        let res = app
            .request(
                Method::POST,
                "/v1/skus/A/adjustments",
                Some(key),
                Some(adjustment("rcv-1", 5)),
            )
            .await;

        // Assert
        assert_problem(res, 403, "forbidden").await;
    }
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn malformed_adjustments_are_422_listing_every_problem_and_change_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let before = Snapshot::take(&app, &["A"]).await;
    let cases: [(&str, Value, &'static [&'static str]); 7] = [
        (
            "missing adjustment_id",
            json!({ "delta": 5 }),
            &["adjustment_id"],
        ),
        (
            "delta 0",
            json!({ "adjustment_id": "a-1", "delta": 0 }),
            &["delta"],
        ),
        (
            "delta as a string",
            json!({ "adjustment_id": "a-1", "delta": "5" }),
            &["delta"],
        ),
        (
            "unknown field",
            json!({ "adjustment_id": "a-1", "delta": 5, "colour": "red" }),
            &["colour"],
        ),
        (
            "missing delta",
            json!({ "adjustment_id": "a-1" }),
            &["delta"],
        ),
        (
            "empty id, fractional delta, numeric reason",
            json!({ "adjustment_id": "", "delta": 1.5, "reason": 7 }),
            &["adjustment_id", "delta", "reason"],
        ),
        (
            "every problem at once",
            json!({ "delta": 0, "colour": "red" }),
            &["adjustment_id", "delta", "colour"],
        ),
    ];
    let mut failures = Failures::default();

    for (name, body, fields) in cases {
        // Act
        let res = app.adjust("A", body).await;

        // Assert
        let outcome = match check_refusal(res, Expect::InvalidExactly(fields)).await {
            Ok(_) => before.unchanged(&app).await,
            Err(e) => Err(e),
        };
        failures.record(name, outcome);
    }
    failures.assert_none();
}

#[tokio::test]
async fn an_adjustment_is_recorded_in_postgres() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;

    // Act
    body_of(app.adjust("A", adjustment("rcv-889", 50)).await, 201).await;
    body_of(
        app.adjust(
            "A",
            json!({ "adjustment_id": "dmg-3", "delta": -4, "reason": "damage" }),
        )
        .await,
        201,
    )
    .await;

    // Assert
    let adjustments: Vec<(String, String, i64, Option<String>)> = sqlx::query_as(
        "SELECT adjustment_id, sku, delta, reason FROM adjustments ORDER BY adjustment_id",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(
        adjustments,
        [
            ("dmg-3".into(), "A".into(), -4, Some("damage".into())),
            ("rcv-889".into(), "A".into(), 50, Some("receipt".into())),
        ]
    );
    let movements: Vec<(String, i64, i64, String)> = sqlx::query_as(
        "SELECT kind, delta, on_hand_after, ref FROM stock_movements
         WHERE sku = 'A' AND kind = 'adjustment' ORDER BY id",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(
        movements,
        [
            ("adjustment".into(), 50, 60, "rcv-889".into()),
            ("adjustment".into(), -4, 56, "dmg-3".into()),
        ]
    );
    assert_eq!(app.counts("A").await.0, 56);
    assert_eq!(app.persisted_on_hand("A").await, Some(56));
}

#[tokio::test]
async fn adjustments_are_safe_under_concurrent_sales() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 20).await;
    let sales = (0..20).map(|i| {
        let app = &app;
        async move {
            let res = app
                .reserve(json!({ "lines": [ { "sku": "A", "qty": 1 } ] }))
                .await;
            if res.status() != 201 {
                return false;
            }
            let id = res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let res = app
                .commit(&id, json!({ "order_id": format!("ord-{i}") }))
                .await;
            let status = res.status().as_u16();
            assert!(
                status == 201,
                "commit answered {status}: {}",
                res.text().await.unwrap()
            );
            true
        }
    });
    let receipts = (0..10).map(|i| {
        let app = &app;
        async move {
            let res = app.adjust("A", adjustment(&format!("rcv-{i}"), 1)).await;
            let status = res.status().as_u16();
            assert_eq!(status, 201, "{}", res.text().await.unwrap());
        }
    });

    // Act
    let (sold, _) = tokio::join!(join_all(sales), join_all(receipts));

    // Assert
    let committed = sold.iter().filter(|s| **s).count() as i64;
    assert_eq!(committed, 20, "20 units were there for 20 buyers");
    let expected = 20 + 10 - committed;
    assert_eq!(app.counts("A").await, (expected, 0, expected));
    let persisted = app
        .eventually(Duration::from_secs(5), || async {
            app.persisted_on_hand("A").await == Some(expected)
        })
        .await;
    assert!(
        persisted,
        "Postgres skus.on_hand is {:?}, live on_hand {expected}",
        app.persisted_on_hand("A").await
    );
    let ledger_sum: i64 =
        sqlx::query_scalar("SELECT sum(delta)::bigint FROM stock_movements WHERE sku = 'A'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(
        ledger_sum, expected,
        "the ledger's deltas add up to on_hand"
    );
}

#[tokio::test]
async fn concurrent_repeats_of_one_adjustment_apply_it_once() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let attempts = (0..10).map(|_| app.adjust("A", adjustment("rcv-1", 5)));

    // Act
    let answers = join_all(attempts).await;

    // Assert
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let created = statuses.iter().filter(|s| **s == 201).count();
    let repeated = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!((created, repeated), (1, 9), "{statuses:?}");
    assert_eq!(app.counts("A").await, (15, 0, 15));
    assert_eq!(app.persisted_on_hand("A").await, Some(15));
    let rows: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stock_movements WHERE kind = 'adjustment' AND ref = 'rcv-1'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_receipt_is_accepted_while_the_sku_is_sold_on_backorder() {
    // Arrange: nothing on hand, 3 held on backorder.
    let app = spawn_app().await;
    let res = app
        .put_sku("BO", json!({ "on_hand": 0, "backorder_limit": 5 }))
        .await;
    assert_eq!(res.status(), 201);
    app.hold(&[("BO", 3)]).await;

    // Act
    let res = app
        .adjust(
            "BO",
            json!({ "adjustment_id": "rcv-1", "delta": 2, "reason": "receipt" }),
        )
        .await;

    // Assert
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    assert_eq!(app.counts("BO").await, (2, 3, 4));
}
