//! Baskets over several partitions of the live state (always 4 here,
//! whatever STOCKHOLD_TEST_PARTITIONS says): all-or-nothing holds, partial
//! holds, changes, commits and releases across partitions, and the steps a
//! crash can cut off. With 4 partitions (FNV-1a of the name, modulo 4):
//! R14 and R07 live in p0, R08 and R13 in p1, R09 and R16 in p2, R11, R19
//! and R02 in p3.

use crate::helpers::*;
use serde_json::{json, Value};

async fn spawn_partitioned() -> TestApp {
    spawn_app_with(|s| s.redis.partitions = 4).await
}

fn lines(v: &Value) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = v["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["sku"].as_str().unwrap().to_owned(),
                l["qty"].as_i64().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn the_skus_of_these_tests_are_where_the_module_says() {
    let app = spawn_partitioned().await;
    let keys = app.stock.engine.keys();
    let at = |s: &str| keys.of_sku(&stockhold::domain::Sku::parse(s).unwrap()).0;
    assert_eq!(
        ["R14", "R07", "R08", "R13", "R09", "R16", "R11", "R19", "R02"].map(at),
        [0, 0, 1, 1, 2, 2, 3, 3, 3]
    );
}

#[tokio::test]
async fn a_partial_hold_over_partitions_takes_what_is_there_and_lists_the_rest() {
    // Arrange: R11 (home partition) has nothing.
    let app = spawn_partitioned().await;
    for (sku, n) in [("R11", 0), ("R19", 10), ("R09", 10), ("R02", 10)] {
        app.create_sku(sku, n).await;
    }

    // Act
    let res = app
        .reserve(json!({ "allow_partial": true, "lines": [
            { "sku": "R11", "qty": 2 }, { "sku": "R19", "qty": 2 },
            { "sku": "R09", "qty": 3 }, { "sku": "R02", "qty": 1 } ] }))
        .await;

    // Assert
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        lines(&body),
        [("R02".into(), 1), ("R09".into(), 3), ("R19".into(), 2)]
    );
    assert_eq!(
        body["shortages"],
        json!([{ "sku": "R11", "requested": 2, "available": 0 }])
    );
}

#[tokio::test]
async fn a_basket_over_partitions_is_held_whole_or_refused_listing_every_short_line() {
    // Arrange
    let app = spawn_partitioned().await;
    for (sku, n) in [("R14", 5), ("R08", 1), ("R09", 0), ("R11", 5)] {
        app.create_sku(sku, n).await;
    }

    // Act: R08 (p1) and R09 (p2) are short.
    let res = app
        .reserve(json!({ "lines": [
            { "sku": "R14", "qty": 2 }, { "sku": "R08", "qty": 2 },
            { "sku": "R09", "qty": 1 }, { "sku": "R11", "qty": 1 } ] }))
        .await;

    // Assert: nothing held anywhere; both short lines listed.
    let body = assert_problem(res, 409, "insufficient_stock").await;
    let mut short: Vec<&str> = body["shortages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sku"].as_str().unwrap())
        .collect();
    short.sort();
    assert_eq!(short, ["R08", "R09"]);
    for (sku, n) in [("R14", 5), ("R08", 1), ("R09", 0), ("R11", 5)] {
        assert_eq!(app.counts(sku).await, (n, 0, n), "{sku}");
    }
}

#[tokio::test]
async fn a_basket_over_partitions_commits_whole_and_reaches_the_ledger_once() {
    // Arrange
    let app = spawn_partitioned().await;
    for sku in ["R14", "R08", "R09", "R11"] {
        app.create_sku(sku, 10).await;
    }
    let id = app
        .hold(&[("R14", 1), ("R08", 2), ("R09", 3), ("R11", 4)])
        .await;

    // Act
    let first = app.commit(&id, json!({ "order_id": "ord-x" })).await;
    let again = app.commit(&id, json!({ "order_id": "ord-x" })).await;

    // Assert
    assert_eq!(first.status(), 201);
    let again_status = again.status();
    let order: Value = again.json().await.unwrap();
    assert_eq!(again_status, 200, "{order}");
    assert_eq!(
        lines(&order),
        [
            ("R08".into(), 2),
            ("R09".into(), 3),
            ("R11".into(), 4),
            ("R14".into(), 1)
        ]
    );
    for (sku, n) in [("R14", 1), ("R08", 2), ("R09", 3), ("R11", 4)] {
        assert_eq!(app.counts(sku).await, (10 - n, 0, 10 - n), "{sku}");
        assert_eq!(app.persisted_on_hand(sku).await, Some(10 - n), "{sku}");
    }
}
