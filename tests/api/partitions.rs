//! Baskets over several partitions of the live state (always 4 here,
//! whatever STOCKHOLD_TEST_PARTITIONS says): all-or-nothing holds, partial
//! holds, changes, commits and releases across partitions, and the steps a
//! crash can cut off. With 4 partitions: R14 and R09 live in p0, R07 and
//! R19 in p1, R08 and R15 in p2, R13, R06 and R01 in p3.

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
        ["R14", "R09", "R07", "R19", "R08", "R15", "R13", "R06", "R01"].map(at),
        [0, 0, 1, 1, 2, 2, 3, 3, 3]
    );
}

#[tokio::test]
async fn a_partial_hold_over_partitions_takes_what_is_there_and_lists_the_rest() {
    // Arrange: R13 (in the home partition, p3) has nothing.
    let app = spawn_partitioned().await;
    for (sku, n) in [("R13", 0), ("R06", 10), ("R08", 10), ("R01", 10)] {
        app.create_sku(sku, n).await;
    }

    // Act
    let res = app
        .reserve(json!({ "allow_partial": true, "lines": [
            { "sku": "R13", "qty": 2 }, { "sku": "R06", "qty": 2 },
            { "sku": "R08", "qty": 3 }, { "sku": "R01", "qty": 1 } ] }))
        .await;

    // Assert
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        lines(&body),
        [("R01".into(), 1), ("R06".into(), 2), ("R08".into(), 3)]
    );
    assert_eq!(
        body["shortages"],
        json!([{ "sku": "R13", "requested": 2, "available": 0 }])
    );
}

#[tokio::test]
async fn a_basket_over_partitions_is_held_whole_or_refused_listing_every_short_line() {
    // Arrange
    let app = spawn_partitioned().await;
    for (sku, n) in [("R14", 5), ("R07", 1), ("R08", 0), ("R13", 5)] {
        app.create_sku(sku, n).await;
    }

    // Act: R07 (p1) and R08 (p2) are short.
    let res = app
        .reserve(json!({ "lines": [
            { "sku": "R14", "qty": 2 }, { "sku": "R07", "qty": 2 },
            { "sku": "R08", "qty": 1 }, { "sku": "R13", "qty": 1 } ] }))
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
    assert_eq!(short, ["R07", "R08"]);
    for (sku, n) in [("R14", 5), ("R07", 1), ("R08", 0), ("R13", 5)] {
        assert_eq!(app.counts(sku).await, (n, 0, n), "{sku}");
    }
}

#[tokio::test]
async fn a_basket_over_partitions_commits_whole_and_reaches_the_ledger_once() {
    // Arrange
    let app = spawn_partitioned().await;
    for sku in ["R14", "R07", "R08", "R13"] {
        app.create_sku(sku, 10).await;
    }
    let id = app
        .hold(&[("R14", 1), ("R07", 2), ("R08", 3), ("R13", 4)])
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
            ("R07".into(), 2),
            ("R08".into(), 3),
            ("R13".into(), 4),
            ("R14".into(), 1)
        ]
    );
    for (sku, n) in [("R14", 1), ("R07", 2), ("R08", 3), ("R13", 4)] {
        assert_eq!(app.counts(sku).await, (10 - n, 0, 10 - n), "{sku}");
        assert_eq!(app.persisted_on_hand(sku).await, Some(10 - n), "{sku}");
    }
}

#[tokio::test]
async fn a_basket_over_partitions_whose_lines_were_all_set_to_0_cannot_be_committed() {
    // Arrange: a hold over p0 and p3, both lines then set to 0.
    let app = spawn_partitioned().await;
    for sku in ["R14", "R13"] {
        app.create_sku(sku, 10).await;
    }
    let id = app.hold(&[("R14", 1), ("R13", 1)]).await;
    let res = app
        .patch_reservation(
            &id,
            json!({ "lines": [{ "sku": "R14", "qty": 0 }, { "sku": "R13", "qty": 0 }] }),
        )
        .await;
    assert_eq!(res.status(), 200);

    // Act
    let res = app.commit(&id, json!({})).await;

    // Assert: refused as empty; nothing sold.
    assert_problem(res, 422, "validation_failed").await;
    for sku in ["R14", "R13"] {
        assert_eq!(app.counts(sku).await, (10, 0, 10), "{sku}");
    }
}

#[tokio::test]
async fn while_one_partition_is_rebuilt_the_others_serve_and_the_instance_stays_ready() {
    // Arrange: R14's partition (p0) lost its data, as after a failover, and
    // its rebuild waits on a lease held by an instance that died.
    let app = spawn_partitioned().await;
    app.create_sku("R14", 10).await;
    app.create_sku("R13", 100).await;
    let keys = app.stock.engine.keys();
    let p0 = keys.part(keys.of_sku(&stockhold::domain::Sku::parse("R14").unwrap()));
    let mut redis = app.redis().await;
    let _: () = redis::pipe()
        .cmd("SET")
        .arg(p0.rebuild_lock())
        .arg("instance-that-died")
        .arg("PX")
        .arg(4000)
        .ignore()
        .cmd("DEL")
        .arg(p0.ready())
        .ignore()
        .query_async(&mut redis)
        .await
        .unwrap();
    let one = |sku: &str| json!({ "lines": [{ "sku": sku, "qty": 1 }] });

    // Act: what the instance answers for the next 2 s.
    let mut answers = Vec::new();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let ready = app
            .request(reqwest::Method::GET, "/readyz", None, None)
            .await
            .status()
            .as_u16();
        let other = app.reserve(one("R13")).await.status().as_u16();
        let rebuilt = app.reserve(one("R14")).await.status().as_u16();
        answers.push((ready, other, rebuilt));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Assert: R14 refused while its partition waits, R13 held throughout,
    // /readyz 200 throughout; R14 held again once the lease ran out.
    assert!(
        answers.iter().all(|a| *a == (200, 201, 503)),
        "(readyz, R13, R14) answers: {answers:?}"
    );
    let back = app
        .eventually(std::time::Duration::from_secs(10), || async {
            app.reserve(one("R14")).await.status() == 201
        })
        .await;
    assert!(
        back,
        "R14 not held again 10 s after its partition's lease ran out"
    );
}
