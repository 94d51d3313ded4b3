//! Channel allocations and safety stock: units of a SKU set aside for one
//! channel (the call centre, a marketplace), and units no channel may hold.

use crate::helpers::*;
use crate::validation::error_fields;
use futures_util::stream::{self, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// A reservation of `qty` units of `sku` by `channel` (the call centre's
/// key for its own channel, the storefront's otherwise).
async fn reserve_on(app: &TestApp, channel: &str, sku: &str, qty: i64) -> reqwest::Response {
    let key = if channel == "callcentre" {
        CALLCENTRE
    } else {
        STOREFRONT
    };
    app.request(
        Method::POST,
        "/v1/reservations",
        Some(key),
        Some(json!({ "lines": [{ "sku": sku, "qty": qty }], "channel": channel })),
    )
    .await
}

/// Holds and returns the reservation's id, asserting 201.
async fn hold_on(app: &TestApp, channel: &str, sku: &str, qty: i64) -> String {
    let res = reserve_on(app, channel, sku, qty).await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// The SKU's pools as (on_hand, held, available) by name.
async fn pools(app: &TestApp, sku: &str) -> BTreeMap<String, (i64, i64, i64)> {
    let view = app.sku(sku).await;
    view["pools"]
        .as_array()
        .unwrap_or_else(|| panic!("no pools in {view}"))
        .iter()
        .map(|p| {
            let n = |f: &str| p[f].as_i64().unwrap();
            (
                p["pool"].as_str().unwrap().to_owned(),
                (n("on_hand"), n("held"), n("available")),
            )
        })
        .collect()
}

/// `GET /v1/availability?sku=..&channel=..`: the available count.
async fn available_to(app: &TestApp, sku: &str, channel: Option<&str>) -> i64 {
    let query = match channel {
        Some(c) => format!("sku={sku}&channel={c}"),
        None => format!("sku={sku}"),
    };
    let res = app
        .request(
            Method::GET,
            &format!("/v1/availability?{query}"),
            Some(STOREFRONT),
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["items"][0]["available"]
        .as_i64()
        .unwrap()
}

/// Sets up `sku` with `on_hand` units, `allocations` and `safety_stock`.
async fn set_up(app: &TestApp, sku: &str, on_hand: i64, allocations: Value, safety: i64) {
    let res = app
        .put_sku(
            sku,
            json!({ "on_hand": on_hand, "allocations": allocations, "safety_stock": safety }),
        )
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 201, "{body}");
}

fn p(on_hand: i64, held: i64, available: i64) -> (i64, i64, i64) {
    (on_hand, held, available)
}

#[tokio::test]
async fn each_pool_shows_its_share_held_and_available_and_they_add_up() {
    // Arrange
    let app = spawn_app().await;
    set_up(&app, "A", 100, json!({ "callcentre": 20, "market": 10 }), 5).await;

    // Act
    hold_on(&app, "callcentre", "A", 3).await;
    hold_on(&app, "web", "A", 4).await;
    hold_on(&app, "market", "A", 12).await; // 10 of its own, 2 shared

    // Assert
    let view = app.sku("A").await;
    assert_eq!(view["safety_stock"], 5);
    assert_eq!(
        view["allocations"],
        json!({ "callcentre": 20, "market": 10 })
    );
    let pools = pools(&app, "A").await;
    assert_eq!(pools["shared"], p(65, 6, 59));
    assert_eq!(pools["callcentre"], p(20, 3, 17));
    assert_eq!(pools["market"], p(10, 10, 0));
    assert_eq!(pools["safety"], p(5, 0, 0));
    let total = |f: fn(&(i64, i64, i64)) -> i64| pools.values().map(f).sum::<i64>();
    assert_eq!(view["on_hand"], total(|p| p.0));
    assert_eq!(view["held"], total(|p| p.1));
    assert_eq!(view["available"], total(|p| p.2));
    assert_eq!(available_to(&app, "A", None).await, 59);
    assert_eq!(available_to(&app, "A", Some("web")).await, 59);
    assert_eq!(available_to(&app, "A", Some("callcentre")).await, 59 + 17);
    assert_eq!(available_to(&app, "A", Some("market")).await, 59);
    // A SKU without pools shows none.
    app.create_sku("PLAIN", 3).await;
    let plain = app.sku("PLAIN").await;
    assert!(plain.get("pools").is_none() && plain.get("allocations").is_none());
}

#[tokio::test]
async fn safety_stock_is_never_held_by_any_channel() {
    // Arrange: 10 units, 3 kept back, 2 for the call centre.
    let app = spawn_app().await;
    set_up(&app, "S", 10, json!({ "callcentre": 2 }), 3).await;

    // Act: every channel takes what it can, one unit at a time.
    let mut held = BTreeMap::new();
    for channel in ["web", "callcentre", "market"] {
        let mut n = 0;
        while reserve_on(&app, channel, "S", 1).await.status() == 201 {
            n += 1;
            assert!(n <= 10, "{channel} held more than there is");
        }
        held.insert(channel, n);
    }

    // Assert: 5 shared units went to the first channel, the call centre
    // got its 2, nobody the 3 kept back.
    assert_eq!(
        held,
        BTreeMap::from([("web", 5), ("callcentre", 2), ("market", 0)])
    );
    let res = reserve_on(&app, "callcentre", "S", 1).await;
    let body = assert_problem(res, 409, "insufficient_stock").await;
    assert_eq!(body["shortages"][0]["available"], 0);
    assert_eq!(app.counts("S").await, (10, 7, 0));
    assert_eq!(pools(&app, "S").await["safety"], p(3, 0, 0));
    // A decrease of on_hand cannot take the units kept back either.
    let res = app
        .adjust("S", json!({ "adjustment_id": "adj-1", "delta": -1 }))
        .await;
    assert_problem(res, 409, "insufficient_stock").await;
    // Lowering the safety stock frees its units for everyone.
    let res = app.put_sku("S", json!({ "safety_stock": 1 })).await;
    assert_eq!(res.status(), 200);
    assert_eq!(reserve_on(&app, "web", "S", 2).await.status(), 201);
    assert_eq!(app.counts("S").await, (10, 9, 0));
}

#[tokio::test]
async fn units_go_back_to_the_pool_they_came_from() {
    // Arrange: the call centre holds 25, 20 of its allocation and 5 shared.
    let app = spawn_app().await;
    set_up(&app, "B", 100, json!({ "callcentre": 20 }), 0).await;
    let id = hold_on(&app, "callcentre", "B", 25).await;
    assert_eq!(pools(&app, "B").await["callcentre"], p(20, 20, 0));
    assert_eq!(pools(&app, "B").await["shared"], p(80, 5, 75));

    // Act + Assert: a line that shrinks gives back shared units first.
    let res = app
        .patch_reservation(&id, json!({ "lines": [{ "sku": "B", "qty": 18 }] }))
        .await;
    assert_eq!(res.status(), 200);
    let now = pools(&app, "B").await;
    assert_eq!(
        (now["callcentre"], now["shared"]),
        (p(20, 18, 2), p(80, 0, 80))
    );
    // A line that grows takes from the allocation first.
    let res = app
        .patch_reservation(&id, json!({ "lines": [{ "sku": "B", "qty": 23 }] }))
        .await;
    assert_eq!(res.status(), 200);
    let now = pools(&app, "B").await;
    assert_eq!(
        (now["callcentre"], now["shared"]),
        (p(20, 20, 0), p(80, 3, 77))
    );
    // A release gives each pool its units back.
    assert_eq!(app.release(&id).await.status(), 200);
    let now = pools(&app, "B").await;
    assert_eq!(
        (now["callcentre"], now["shared"]),
        (p(20, 0, 20), p(80, 0, 80))
    );
    // So does an expiry.
    let res = app
        .request(
            Method::POST,
            "/v1/reservations",
            Some(CALLCENTRE),
            Some(
                json!({ "lines": [{ "sku": "B", "qty": 22 }], "channel": "callcentre",
                         "ttl_seconds": 1 }),
            ),
        )
        .await;
    assert_eq!(res.status(), 201);
    let back = app
        .eventually(Duration::from_secs(10), || async {
            let now = pools(&app, "B").await;
            now["callcentre"] == p(20, 0, 20) && now["shared"] == p(80, 0, 80)
        })
        .await;
    assert!(back, "expired units not back: {:?}", pools(&app, "B").await);
    // A commit sells from where the units were held: the allocation's
    // share drops with on_hand.
    let id = hold_on(&app, "callcentre", "B", 22).await;
    let res = app.commit(&id, json!({ "order_id": "o-1" })).await;
    assert_eq!(res.status(), 201);
    let now = pools(&app, "B").await;
    assert_eq!(
        (now["callcentre"], now["shared"]),
        (p(0, 0, 0), p(78, 0, 78))
    );
    assert_eq!(app.counts("B").await, (78, 0, 78));
    // A restocking return puts the allocation's units back in it first.
    let res = app
        .return_order(
            "o-1",
            json!({ "return_id": "r-1", "lines": [{ "sku": "B", "qty": 21 }], "restock": true }),
        )
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let now = pools(&app, "B").await;
    assert_eq!(
        (now["callcentre"], now["shared"]),
        (p(20, 0, 20), p(79, 0, 79))
    );
    let res = app
        .return_order(
            "o-1",
            json!({ "return_id": "r-2", "lines": [{ "sku": "B", "qty": 1 }], "restock": true }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let now = pools(&app, "B").await;
    assert_eq!(
        (now["callcentre"], now["shared"]),
        (p(20, 0, 20), p(80, 0, 80))
    );
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn a_basket_over_several_skus_takes_and_gives_back_each_pool_atomically() {
    // Arrange: three SKUs (over several partitions when there are), each
    // with 5 units for the call centre and 5 shared.
    let app = spawn_app().await;
    let skus = ["BASKET-A", "BASKET-B", "BC"];
    for sku in skus {
        set_up(&app, sku, 10, json!({ "callcentre": 5 }), 0).await;
    }
    let partitions: std::collections::BTreeSet<String> =
        skus.iter().map(|s| app.redis_base(s)).collect();
    assert!(
        test_partitions() == 1 || partitions.len() > 1,
        "the basket should span partitions: {partitions:?}"
    );
    let lines = |q: [i64; 3]| -> Value {
        json!(skus
            .iter()
            .zip(q)
            .map(|(s, q)| json!({ "sku": s, "qty": q }))
            .collect::<Vec<_>>())
    };

    // Act + Assert: 7, 3 and 5 held: the allocation first.
    let res = app
        .request(
            Method::POST,
            "/v1/reservations",
            Some(CALLCENTRE),
            Some(json!({ "lines": lines([7, 3, 5]), "channel": "callcentre" })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(both(&app).await, [(5, 2), (3, 0), (5, 0)]);
    // One line too many for both pools: nothing changes anywhere.
    let res = app
        .patch_reservation(&id, json!({ "lines": lines([4, 9, 11]) }))
        .await;
    assert_problem(res, 409, "insufficient_stock").await;
    assert_eq!(both(&app).await, [(5, 2), (3, 0), (5, 0)]);
    // Down gives back shared units first, up takes the allocation's.
    let res = app
        .patch_reservation(&id, json!({ "lines": lines([4, 9, 1]) }))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(both(&app).await, [(4, 0), (5, 4), (1, 0)]);
    // The sale takes each allocation's units out of its share.
    let res = app.commit(&id, json!({ "order_id": "o-k" })).await;
    assert_eq!(res.status(), 201);
    let mut shares = Vec::new();
    for sku in skus {
        let p = pools(&app, sku).await;
        shares.push((p["callcentre"].0, p["shared"].0));
    }
    assert_eq!(shares, [(1, 5), (0, 1), (4, 5)]);
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn changing_an_allocation_never_takes_what_is_held_and_is_a_ledger_row() {
    // Arrange: the call centre holds 15 of its 20.
    let app = spawn_app().await;
    set_up(&app, "C", 50, json!({ "callcentre": 20 }), 0).await;
    hold_on(&app, "callcentre", "C", 15).await;
    hold_on(&app, "web", "C", 25).await;

    // Act + Assert: below what is held, in either pool: 409 with figures.
    let res = app
        .put_sku("C", json!({ "allocations": { "callcentre": 10 } }))
        .await;
    let body = assert_problem(res, 409, "pool_below_held").await;
    assert_eq!(
        body["pools"],
        json!([{ "pool": "callcentre", "on_hand": 10, "held": 15 }])
    );
    let res = app
        .put_sku(
            "C",
            json!({ "allocations": { "callcentre": 20, "market": 6 } }),
        )
        .await;
    let body = assert_problem(res, 409, "pool_below_held").await;
    assert_eq!(
        body["pools"],
        json!([{ "pool": "shared", "on_hand": 24, "held": 25 }])
    );
    let res = app.put_sku("C", json!({ "safety_stock": 6 })).await;
    assert_problem(res, 409, "pool_below_held").await;
    let res = app.put_sku("C", json!({ "allocations": null })).await;
    assert_problem(res, 409, "pool_below_held").await;
    let pools_now = pools(&app, "C").await;
    assert_eq!(pools_now["callcentre"], p(20, 15, 5));
    assert_eq!(pools_now["shared"], p(30, 25, 5));

    // The same setting again changes nothing and writes no row.
    let rows = ledger_rows(&app, "C").await;
    let res = app
        .put_sku("C", json!({ "allocations": { "callcentre": 20 } }))
        .await;
    assert_eq!(res.status(), 200);
    // A change that fits moves units between pools, on_hand unchanged.
    let res = app
        .put_sku(
            "C",
            json!({ "allocations": { "callcentre": 15, "market": 4 }, "safety_stock": 1 }),
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let pools_now = pools(&app, "C").await;
    assert_eq!(pools_now["callcentre"], p(15, 15, 0));
    assert_eq!(pools_now["market"], p(4, 0, 4));
    assert_eq!(pools_now["safety"], p(1, 0, 0));
    assert_eq!(pools_now["shared"], p(30, 25, 5));
    let recorded = app
        .eventually(Duration::from_secs(10), || async {
            ledger_rows(&app, "C").await.len() == rows.len() + 3
        })
        .await;
    let after = ledger_rows(&app, "C").await;
    assert!(recorded, "{after:#?}");
    let new: Vec<(String, i64, i64, String)> = after[..3]
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_owned(),
                r["delta"].as_i64().unwrap(),
                r["on_hand_after"].as_i64().unwrap(),
                r["ref"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        new.iter()
            .all(|r| r.0 == "allocation" && r.1 == 0 && r.2 == 50),
        "{new:?}"
    );
    let refs: Vec<&str> = new.iter().map(|r| r.3.as_str()).collect();
    for wanted in [
        "callcentre: allocation 15 (-5)",
        "market: allocation 4 (+4)",
        "safety stock 1 (+1)",
    ] {
        assert!(refs.contains(&wanted), "{refs:?}");
    }
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn malformed_pool_settings_get_422_listing_every_problem_and_change_nothing() {
    // Arrange
    let app = spawn_app().await;
    set_up(&app, "M", 10, json!({ "callcentre": 2 }), 1).await;
    let before = app.sku("M").await;

    // Act
    let res = app
        .put_sku(
            "M",
            json!({
                "safety_stock": -1,
                "allocations": { "a b": 1, "shared": 2, "x": -1, "y": 1.5, "z": "3" },
            }),
        )
        .await;
    let res2 = app.put_sku("M", json!({ "allocations": [1] })).await;
    let res3 = app
        .put_sku("M", json!({ "allocations": { "web": 1 }, "buckets": 2 }))
        .await;

    // Assert
    let body = assert_problem(res, 422, "validation_failed").await;
    let fields = error_fields(&body).unwrap();
    for f in [
        "safety_stock",
        "allocations.a b",
        "allocations.shared",
        "allocations.x",
        "allocations.y",
        "allocations.z",
    ] {
        assert!(fields.iter().any(|x| x == f), "{f} missing from {body}");
    }
    assert_problem(res2, 422, "validation_failed").await;
    assert_problem(res3, 422, "validation_failed").await;
    assert_eq!(app.sku("M").await, before);
}

#[tokio::test]
async fn reconcile_finds_and_repairs_a_pool_and_the_rebuild_restores_them() {
    // Arrange: holds and a sale from the allocation, all recorded.
    let app = spawn_app().await;
    set_up(&app, "R", 40, json!({ "callcentre": 10 }), 2).await;
    let sold = hold_on(&app, "callcentre", "R", 4).await;
    assert_eq!(
        app.commit(&sold, json!({ "order_id": "o-r" }))
            .await
            .status(),
        201
    );
    hold_on(&app, "callcentre", "R", 8).await; // 6 of its own, 2 shared
    hold_on(&app, "web", "R", 3).await;
    let expected = pools(&app, "R").await;
    assert_eq!(expected["callcentre"], p(6, 6, 0));
    assert_eq!(expected["shared"], p(28, 5, 23));
    assert_eq!(drifted(&app).await, json!([]));

    // Act: the allocation's share drifts in Redis.
    let base = app.redis_base("R");
    let mut redis = app.redis().await;
    let _: () = redis::cmd("HINCRBY")
        .arg(format!("{base}pshare:callcentre"))
        .arg("R")
        .arg(3)
        .query_async(&mut redis)
        .await
        .unwrap();

    // Assert: found as the allocation's drift, and repaired.
    let drift = drifted(&app).await;
    let pool_drift = drift
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["pool"] == "callcentre")
        .unwrap_or_else(|| panic!("no drift of the allocation: {drift}"));
    assert_eq!(pool_drift["sku"], "R");
    assert_eq!(pool_drift["expected"], json!({ "on_hand": 6, "held": 6 }));
    assert_eq!(pool_drift["actual"], json!({ "on_hand": 9, "held": 9 }));
    let res = app.reconcile(json!({ "repair": true })).await;
    assert_eq!(res.status(), 200);
    assert_eq!(drifted(&app).await, json!([]));
    assert_eq!(pools(&app, "R").await, expected);

    // Act: Redis loses every key; the start-up rebuild refills it.
    app.lose_every_key().await;
    let rebuilt = app
        .eventually(Duration::from_secs(10), || async {
            app.get_sku("R").await.status() == 200
        })
        .await;
    assert!(rebuilt, "not rebuilt");

    // Assert: the pools are back, the lost holds' units free.
    let now = pools(&app, "R").await;
    assert_eq!(now["callcentre"], p(6, 0, 6));
    assert_eq!(now["shared"], p(28, 0, 28));
    assert_eq!(now["safety"], p(2, 0, 0));
    assert_eq!(
        app.sku("R").await["allocations"],
        json!({ "callcentre": 6 })
    );
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn an_allocation_the_ledger_has_not_recorded_yet_is_not_drift() {
    // Arrange: the drain is off and the PUT that sets the allocation is
    // made in Redis only (as when its persisting failed): the ledger does
    // not know the allocation yet, the outbox has it.
    let app = spawn_app_with(|s| s.reconciler.drain_interval_ms = 3_600_000).await;
    app.create_sku("N", 100).await;
    let req =
        stockhold::domain::PutSkuRequest::parse(&json!({ "allocations": { "cc": 20 } })).unwrap();
    let sku = stockhold::domain::Sku::parse("N").unwrap();
    app.stock.engine.put_sku(&sku, &req).await.unwrap();
    hold_on(&app, "cc", "N", 5).await;
    let before = pools(&app, "N").await;

    // Act
    let check = drifted(&app).await;
    let res = app.reconcile(json!({ "repair": true })).await;
    assert_eq!(res.status(), 200);

    // Assert: no drift, nothing changed (no units back in the shared pool).
    assert_eq!(check, json!([]));
    assert_eq!(pools(&app, "N").await, before);
    assert_eq!(before["shared"], p(80, 0, 80));
    assert_eq!(before["cc"], p(20, 5, 15));

    // And a batch that has no row for the allocation at all (the caller
    // read the ledger and the outbox before the allocation was made) finds
    // no drift either: the share is left out on both sides.
    let engine = &app.stock.engine;
    let part = engine.keys().of_sku(&sku);
    let up_to = engine
        .outbox_after(part, stockhold::domain::StreamId::default(), 10_000)
        .await
        .unwrap()
        .last()
        .map(|e| e.id)
        .unwrap();
    let index = engine.hold_index(part).await.unwrap();
    let record = stockhold::ledger::SkuRecord::plain("N", 100);
    let found = engine
        .reconcile_batch(
            part,
            stockhold::domain::ReconcileMode::Repair,
            up_to,
            "",
            &index,
            &[(&record, 100)],
        )
        .await
        .unwrap();
    engine.end_watch(part, &index).await.unwrap();
    assert_eq!(found.map(|(d, _)| d), Some(vec![]));
    assert_eq!(pools(&app, "N").await, before);
}

#[tokio::test]
async fn a_redis_that_lost_the_put_making_an_allocation_gets_it_back_from_the_ledger() {
    // Arrange: an allocation set and recorded; then Redis loses that PUT
    // (the SKU stays, as it was before it).
    let app = spawn_app().await;
    app.create_sku("L", 50).await;
    let res = app
        .put_sku("L", json!({ "allocations": { "cc": 10 } }))
        .await;
    assert_eq!(res.status(), 200);
    let base = app.redis_base("L");
    let mut redis = app.redis().await;
    let _: () = redis::pipe()
        .atomic()
        .hdel(format!("{base}pools"), "L")
        .hdel(format!("{base}pshare:cc"), "L")
        .hdel(format!("{base}pavail:cc"), "L")
        .hset(format!("{base}avail"), "L", 50)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(app.sku("L").await.get("pools").is_none());

    // Act
    let res = app.reconcile(json!({ "repair": true })).await;
    assert_eq!(res.status(), 200);

    // Assert: the allocation is back, listed, with its units.
    let now = pools(&app, "L").await;
    assert_eq!(now["cc"], p(10, 0, 10));
    assert_eq!(now["shared"], p(40, 0, 40));
    assert_eq!(app.sku("L").await["allocations"], json!({ "cc": 10 }));
    assert_eq!(drifted(&app).await, json!([]));
    assert_eq!(available_to(&app, "L", Some("cc")).await, 50);
}

#[tokio::test]
async fn a_return_not_restocked_leaves_the_allocation_its_units_for_a_later_restock() {
    // Arrange: 5 sold, 3 of them from the call centre's allocation.
    let app = spawn_app().await;
    set_up(&app, "T", 20, json!({ "callcentre": 3 }), 0).await;
    let id = hold_on(&app, "callcentre", "T", 5).await;
    assert_eq!(
        app.commit(&id, json!({ "order_id": "o-t" })).await.status(),
        201
    );

    // Act: 3 back without restock (damaged), then 2 restocked.
    let res = app
        .return_order(
            "o-t",
            json!({ "return_id": "r-1", "lines": [{ "sku": "T", "qty": 3 }], "restock": false }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let res = app
        .return_order(
            "o-t",
            json!({ "return_id": "r-2", "lines": [{ "sku": "T", "qty": 2 }], "restock": true }),
        )
        .await;
    assert_eq!(res.status(), 201);

    // Assert: the restocked units went back to the allocation they came from.
    let now = pools(&app, "T").await;
    assert_eq!(now["callcentre"], p(2, 0, 2));
    assert_eq!(now["shared"], p(15, 0, 15));
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_flash_sale_cannot_touch_the_call_centres_allocation() {
    // Arrange: 125 units: 20 for the call centre, 5 kept back, 100 for all.
    const BUYERS: usize = 10_000;
    let app = spawn_app_with(|s| s.database.acquire_timeout_ms = 15_000).await;
    set_up(&app, "FLASH", 125, json!({ "callcentre": 20 }), 5).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    // Act: 10 000 web buyers (200 at a time) and 20 phone orders at once.
    let buy = |channel: &'static str, key: &'static str, n: usize| {
        let (client, base) = (client.clone(), app.address.clone());
        async move {
            let res = client
                .post(format!("{base}/v1/reservations"))
                .bearer_auth(key)
                .json(
                    &json!({ "lines": [{ "sku": "FLASH", "qty": 1 }], "channel": channel,
                               "customer_id": format!("{channel}-{n}") }),
                )
                .send()
                .await
                .expect("answered");
            if res.status() != 201 {
                return (channel, res.status().as_u16(), None);
            }
            let id = res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let res = client
                .post(format!("{base}/v1/reservations/{id}/commit"))
                .bearer_auth(key)
                .json(&json!({ "order_id": format!("{channel}-{n}") }))
                .send()
                .await
                .expect("answered");
            (channel, 201, Some(res.status().as_u16()))
        }
    };
    let web = stream::iter((0..BUYERS).map(|n| buy("web", STOREFRONT, n))).buffer_unordered(200);
    let phone = stream::iter((0..20).map(|n| buy("callcentre", CALLCENTRE, n))).buffer_unordered(4);
    let (web, phone): (Vec<_>, Vec<_>) = tokio::join!(web.collect(), phone.collect());

    // Assert
    let tally = |outcomes: &[(&str, u16, Option<u16>)]| {
        let mut t: BTreeMap<(u16, Option<u16>), usize> = BTreeMap::new();
        for (_, reserve, commit) in outcomes {
            *t.entry((*reserve, *commit)).or_default() += 1;
        }
        t
    };
    let (web, phone) = (tally(&web), tally(&phone));
    println!("flash sale with a call-centre allocation: web {web:?}, phone {phone:?}");
    assert_eq!(
        web,
        BTreeMap::from([((201, Some(201)), 100), ((409, None), BUYERS - 100)])
    );
    assert_eq!(phone, BTreeMap::from([((201, Some(201)), 20)]));
    let left = pools(&app, "FLASH").await;
    assert_eq!(left["callcentre"], p(0, 0, 0));
    assert_eq!(left["shared"], p(0, 0, 0));
    assert_eq!(left["safety"], p(5, 0, 0));
    assert_eq!(app.counts("FLASH").await, (5, 0, 0));
    // The next phone order finds nothing either.
    assert_problem(
        reserve_on(&app, "callcentre", "FLASH", 1).await,
        409,
        "insufficient_stock",
    )
    .await;
    assert_eq!(drifted(&app).await, json!([]));
    let recorded = app
        .eventually(Duration::from_secs(20), || async {
            app.persisted_on_hand("FLASH").await == Some(5)
                && app.persisted_on_hand("FLASH@callcentre").await == Some(0)
        })
        .await;
    assert!(recorded, "the ledger has the sales");
}

/// Units held from the call centre's allocation and from the shared pool
/// of BASKET-A, BASKET-B and BC.
async fn both(app: &TestApp) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    for sku in ["BASKET-A", "BASKET-B", "BC"] {
        let p = pools(app, sku).await;
        out.push((p["callcentre"].1, p["shared"].1));
    }
    out
}

/// The SKU's ledger rows, newest first.
async fn ledger_rows(app: &TestApp, sku: &str) -> Vec<Value> {
    let res = app.ledger(sku, "limit=1000").await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// The drifted SKUs a dry-run reconciliation reports.
async fn drifted(app: &TestApp) -> Value {
    let res = app.reconcile(json!({ "repair": false })).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["drifted"].clone()
}
