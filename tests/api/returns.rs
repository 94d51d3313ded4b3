//! Returns (`POST /v1/orders/{order_id}/returns`): returned units recorded
//! against the order, put back into `on_hand` with `restock`, never more
//! than was sold, once per `return_id`.

use crate::helpers::*;
use crate::validation::{check_refusal, Expect, Failures, Snapshot};
use reqwest::Method;
use serde_json::{json, Value};

/// The JSON body of `res`, asserting its status first.
use crate::helpers::body_of;

/// `[{sku, qty}]` from `(sku, qty)` pairs.
fn lines(pairs: &[(&str, i64)]) -> Value {
    pairs
        .iter()
        .map(|(sku, qty)| json!({ "sku": sku, "qty": qty }))
        .collect()
}

/// `(sku, qty, returned_qty)` of every line of an order view.
fn returned(order: &Value) -> Vec<(String, i64, i64)> {
    order["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("no lines: {order}"))
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_owned(),
                l["qty"].as_i64().unwrap(),
                l["returned_qty"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn owned(rows: &[(&str, i64, i64)]) -> Vec<(String, i64, i64)> {
    rows.iter()
        .map(|(s, q, r)| (s.to_string(), *q, *r))
        .collect()
}

/// An app with A (10), B (5) and C (5), and order `ord-1` of A×3, B×1
/// committed: A is left with 7 on hand, B with 4; C is in no order.
async fn app_with_order() -> TestApp {
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    app.create_sku("C", 5).await;
    app.commit_order("ord-1", &[("A", 3), ("B", 1)]).await;
    app
}

/// The stock movements of kind 'return': (sku, delta, on_hand_after, ref).
async fn return_movements(app: &TestApp) -> Vec<(String, i64, i64, String)> {
    sqlx::query_as(
        "SELECT sku, delta, on_hand_after, ref FROM stock_movements
         WHERE kind = 'return' ORDER BY id",
    )
    .fetch_all(app.db())
    .await
    .unwrap()
}

#[tokio::test]
async fn a_restocking_return_answers_201_with_the_order_and_puts_the_units_back() {
    // Arrange
    let app = app_with_order().await;
    let committed = body_of(app.get_order("ord-1").await, 200).await;

    // Act
    let res = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-12", "lines": lines(&[("A", 1)]), "restock": true }),
        )
        .await;

    // Assert
    let order = body_of(res, 201).await;
    assert_eq!(returned(&order), owned(&[("A", 3, 1), ("B", 1, 0)]));
    for member in ["order_id", "reservation_id", "committed_at"] {
        assert_eq!(order[member], committed[member], "{member}");
    }
    assert_eq!(body_of(app.get_order("ord-1").await, 200).await, order);
    assert_eq!(app.counts("A").await.0, 8, "A is back on hand");
    assert_eq!(app.counts("B").await.0, 4, "B is untouched");
    assert_eq!(app.persisted_on_hand("A").await, Some(8));
    assert_eq!(
        return_movements(&app).await,
        [("A".into(), 1, 8, "rma-12".into())]
    );
}

#[tokio::test]
async fn a_return_without_restock_is_recorded_but_leaves_on_hand_alone() {
    // Arrange
    let app = app_with_order().await;

    // Act
    let not_restocked = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]), "restock": false }),
        )
        .await;
    let restock_absent = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-2", "lines": lines(&[("A", 1), ("B", 1)]) }),
        )
        .await;

    // Assert
    body_of(not_restocked, 201).await;
    let order = body_of(restock_absent, 201).await;
    assert_eq!(returned(&order), owned(&[("A", 3, 2), ("B", 1, 1)]));
    assert_eq!(app.counts("A").await.0, 7);
    assert_eq!(app.counts("B").await.0, 4);
    assert_eq!(app.persisted_on_hand("A").await, Some(7));
    assert_eq!(app.persisted_on_hand("B").await, Some(4));
    assert!(return_movements(&app).await.is_empty());
}

#[tokio::test]
async fn a_return_beyond_what_is_returnable_is_409_listing_every_excess_line_and_records_nothing() {
    // Arrange: 1 of A's 3 is returned already, so 2 are returnable.
    let app = app_with_order().await;
    body_of(
        app.return_order(
            "ord-1",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]), "restock": true }),
        )
        .await,
        201,
    )
    .await;
    let before = Snapshot::take(&app, &["A", "B", "C"]).await;

    // Act
    let res = app
        .return_order(
            "ord-1",
            json!({
                "return_id": "rma-2",
                "lines": lines(&[("A", 3), ("B", 1), ("C", 1)]),
                "restock": true
            }),
        )
        .await;

    // Assert
    let problem = assert_problem(res, 409, "return_exceeds_order").await;
    let mut excess = problem["lines"].as_array().expect("lines listed").clone();
    excess.sort_by(|a, b| a["sku"].as_str().cmp(&b["sku"].as_str()));
    assert_eq!(
        Value::Array(excess),
        json!([
            { "sku": "A", "returnable": 2, "requested": 3 },
            { "sku": "C", "returnable": 0, "requested": 1 },
        ]),
        "{problem}"
    );
    before.unchanged(&app).await.unwrap();
    let order = body_of(app.get_order("ord-1").await, 200).await;
    assert_eq!(returned(&order), owned(&[("A", 3, 1), ("B", 1, 0)]));
}

#[tokio::test]
async fn everything_left_may_be_returned_and_then_nothing_more() {
    // Arrange
    let app = app_with_order().await;
    body_of(
        app.return_order(
            "ord-1",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]) }),
        )
        .await,
        201,
    )
    .await;

    // Act
    let rest = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-2", "lines": lines(&[("A", 2), ("B", 1)]), "restock": true }),
        )
        .await;
    let more = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-3", "lines": lines(&[("B", 1)]) }),
        )
        .await;

    // Assert
    let order = body_of(rest, 201).await;
    assert_eq!(returned(&order), owned(&[("A", 3, 3), ("B", 1, 1)]));
    let problem = assert_problem(more, 409, "return_exceeds_order").await;
    assert_eq!(
        problem["lines"],
        json!([{ "sku": "B", "returnable": 0, "requested": 1 }])
    );
    assert_eq!(app.counts("A").await.0, 9);
    assert_eq!(app.counts("B").await.0, 5);
}

#[tokio::test]
async fn a_repeated_return_answers_200_and_restocks_only_once() {
    // Arrange
    let app = app_with_order().await;
    let body = json!({ "return_id": "rma-12", "lines": lines(&[("A", 2)]), "restock": true });
    let first = body_of(app.return_order("ord-1", body.clone()).await, 201).await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let res = app.return_order("ord-1", body).await;

    // Assert
    assert_eq!(body_of(res, 200).await, first);
    before.unchanged(&app).await.unwrap();
    assert_eq!(app.counts("A").await.0, 9, "restocked once");
    assert_eq!(app.persisted_on_hand("A").await, Some(9));
    assert_eq!(return_movements(&app).await.len(), 1);
}

#[tokio::test]
async fn the_same_return_id_against_another_order_is_409_idempotency_conflict() {
    // Arrange
    let app = app_with_order().await;
    app.commit_order("ord-2", &[("A", 1)]).await;
    body_of(
        app.return_order(
            "ord-1",
            json!({ "return_id": "rma-12", "lines": lines(&[("A", 1)]), "restock": true }),
        )
        .await,
        201,
    )
    .await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let res = app
        .return_order(
            "ord-2",
            json!({ "return_id": "rma-12", "lines": lines(&[("A", 1)]), "restock": true }),
        )
        .await;

    // Assert
    assert_problem(res, 409, "idempotency_conflict").await;
    before.unchanged(&app).await.unwrap();
    let order = body_of(app.get_order("ord-2").await, 200).await;
    assert_eq!(returned(&order), owned(&[("A", 1, 0)]));
}

#[tokio::test]
async fn a_return_against_an_unknown_order_is_404_not_found() {
    // Arrange
    let app = app_with_order().await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let res = app
        .return_order(
            "ord-never-made",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]), "restock": true }),
        )
        .await;

    // Assert
    assert_problem(res, 404, "not_found").await;
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn only_admin_may_record_a_return() {
    // Arrange
    let app = app_with_order().await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    for key in [STOREFRONT, CALLCENTRE] {
        // Act
        let res = app
            .request(
                Method::POST,
                "/v1/orders/ord-1/returns",
                Some(key),
                Some(json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]), "restock": true })),
            )
            .await;

        // Assert
        assert_problem(res, 403, "forbidden").await;
    }
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn malformed_returns_are_422_listing_every_problem_and_record_nothing() {
    // Arrange
    let app = app_with_order().await;
    let before = Snapshot::take(&app, &["A", "B"]).await;
    let cases: [(&str, Value, &'static [&'static str]); 7] = [
        (
            "missing return_id",
            json!({ "lines": lines(&[("A", 1)]) }),
            &["return_id"],
        ),
        ("missing lines", json!({ "return_id": "rma-1" }), &["lines"]),
        (
            "no lines",
            json!({ "return_id": "rma-1", "lines": [] }),
            &["lines"],
        ),
        (
            "qty 0",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 0)]) }),
            &["lines[0].qty"],
        ),
        (
            "restock as a string",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]), "restock": "yes" }),
            &["restock"],
        ),
        (
            "unknown field",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 1)]), "reason": "broken" }),
            &["reason"],
        ),
        (
            "every problem at once",
            json!({
                "return_id": "",
                "lines": [ { "sku": "bad sku", "qty": "1" } ],
                "restock": 1,
                "colour": "red"
            }),
            &[
                "return_id",
                "lines[0].sku",
                "lines[0].qty",
                "restock",
                "colour",
            ],
        ),
    ];
    let mut failures = Failures::default();

    for (name, body, fields) in cases {
        // Act
        let res = app.return_order("ord-1", body).await;

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
async fn lines_of_a_return_naming_the_same_sku_are_summed() {
    // Arrange
    let app = app_with_order().await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let res = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-1", "lines": lines(&[("A", 2), ("A", 2)]), "restock": true }),
        )
        .await;

    // Assert
    let problem = assert_problem(res, 409, "return_exceeds_order").await;
    assert_eq!(
        problem["lines"],
        json!([{ "sku": "A", "returnable": 3, "requested": 4 }])
    );
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn concurrent_returns_never_return_more_than_was_sold() {
    // Arrange: A×3 in the order, 6 returns of one unit each race.
    let app = app_with_order().await;
    let attempts = (0..6).map(|i| {
        app.return_order(
            "ord-1",
            json!({ "return_id": format!("rma-{i}"), "lines": lines(&[("A", 1)]), "restock": true }),
        )
    });

    // Act
    let answers = futures_util::future::join_all(attempts).await;

    // Assert
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((accepted, refused), (3, 3), "{statuses:?}");
    let order = body_of(app.get_order("ord-1").await, 200).await;
    assert_eq!(returned(&order), owned(&[("A", 3, 3), ("B", 1, 0)]));
    assert_eq!(app.counts("A").await.0, 10, "all 3 back, no more");
    assert_eq!(app.persisted_on_hand("A").await, Some(10));
    assert_eq!(return_movements(&app).await.len(), 3);
}

#[tokio::test]
async fn the_same_return_id_with_other_lines_or_restock_is_409_idempotency_conflict() {
    // Arrange
    let app = app_with_order().await;
    let first =
        json!({ "return_id": "rma-1", "lines": [{ "sku": "A", "qty": 1 }], "restock": true });
    assert_eq!(app.return_order("ord-1", first).await.status(), 201);

    // Act / Assert
    for other in [
        json!({ "return_id": "rma-1", "lines": [{ "sku": "A", "qty": 2 }], "restock": true }),
        json!({ "return_id": "rma-1", "lines": [{ "sku": "A", "qty": 1 }], "restock": false }),
    ] {
        let res = app.return_order("ord-1", other).await;
        assert_problem(res, 409, "idempotency_conflict").await;
    }
}

#[tokio::test]
async fn a_restocking_return_is_marked_restocked_once_every_line_is_back() {
    // Arrange
    let app = app_with_order().await;

    // Act
    let res = app
        .return_order(
            "ord-1",
            json!({ "return_id": "rma-7", "lines": lines(&[("A", 2), ("B", 1)]), "restock": true }),
        )
        .await;

    // Assert: both lines back in on_hand and in the ledger, so the drain
    // has no cut-off restock to finish.
    body_of(res, 201).await;
    assert_eq!(app.persisted_on_hand("A").await, Some(9));
    assert_eq!(app.persisted_on_hand("B").await, Some(5));
    let (restocked, lines_back): (bool, i64) = sqlx::query_as(
        "SELECT r.restocked_at IS NOT NULL,
                (SELECT count(*) FROM return_lines l WHERE l.return_id = r.return_id AND l.restocked)
         FROM returns r WHERE r.return_id = 'rma-7'",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((restocked, lines_back), (true, 2));
    let pending = app
        .stock
        .ledger
        .pending_restocks(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}
