//! Hot-SKU buckets (always 4 partitions here, whatever
//! STOCKHOLD_TEST_PARTITIONS says): a SKU spread over several partitions
//! sells every unit from whichever bucket has it, shows its totals, keeps
//! per-customer limits, finishes transfers a crash cut off, and is rebuilt
//! and reconciled bucket by bucket.

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use stockhold::configuration::Settings;
use stockhold::domain::{Partition, Sku};

/// 4 partitions; the balancer runs when a test says (`spread`), so what a
/// test reads of each bucket is what it did.
async fn spawn_partitioned() -> TestApp {
    spawn_partitioned_with(|_| {}).await
}

/// As `spawn_partitioned`, with `change` made to the settings too.
async fn spawn_partitioned_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.redis.partitions = 4;
        s.reconciler.balance_interval_ms = 3_600_000;
        change(s);
    })
    .await
}

/// Sets up `sku` with `on_hand` units over `buckets` buckets and evens them
/// out now rather than at the balancer's next pass.
async fn spread(app: &TestApp, sku: &str, on_hand: i64, buckets: u16) {
    let res = app
        .put_sku(sku, json!({ "on_hand": on_hand, "buckets": buckets }))
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert!(status == 201 || status == 200, "{status} {body}");
    assert_eq!(body["buckets"], buckets, "{body}");
    let s = Sku::parse(sku).unwrap();
    let spread = app.stock.engine.spread_of(&s).expect("known as spread");
    app.stock.engine.balance(&s, spread).await.unwrap();
}

/// (available, on_hand) of `sku` in each of its first `n` buckets, straight
/// from Redis.
async fn per_bucket(app: &TestApp, sku: &str, n: u16) -> Vec<(i64, i64)> {
    let engine = &app.stock.engine;
    let s = Sku::parse(sku).unwrap();
    let mut conn = app.redis().await;
    let mut out = Vec::new();
    for b in 0..n {
        let part = engine.keys().part(engine.partitions().bucket(&s, b));
        let (a, oh): (Option<i64>, Option<i64>) = redis::pipe()
            .atomic()
            .hget(part.avail(), sku)
            .hget(part.on_hand(), sku)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((a.unwrap_or(0), oh.unwrap_or(0)));
    }
    out
}

async fn reserve_one(app: &TestApp, sku: &str, qty: i64) -> reqwest::Response {
    app.reserve(json!({ "lines": [{ "sku": sku, "qty": qty }] }))
        .await
}

async fn drifted(app: &TestApp) -> Value {
    let res = app.reconcile(json!({ "repair": false })).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["drifted"].clone()
}

#[tokio::test]
async fn a_spread_sku_sells_every_unit_from_its_buckets_and_shows_its_totals() {
    // Arrange: 10 units over 4 buckets.
    let app = spawn_partitioned().await;
    spread(&app, "HOT", 10, 4).await;
    let buckets = per_bucket(&app, "HOT", 4).await;
    assert_eq!(buckets.iter().map(|b| b.0).sum::<i64>(), 10, "{buckets:?}");
    assert!(
        buckets.iter().all(|b| (2..=3).contains(&b.0)),
        "{buckets:?}"
    );
    let view = app.sku("HOT").await;
    assert_eq!(
        (&view["on_hand"], &view["available"], &view["buckets"]),
        (&json!(10), &json!(10), &json!(4)),
        "{view}"
    );

    // Act: 10 buyers at once, then one more.
    let holds = futures_util::future::join_all((0..10).map(|_| reserve_one(&app, "HOT", 1))).await;
    let mut ids = Vec::new();
    for res in holds {
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let late = assert_problem(reserve_one(&app, "HOT", 1).await, 409, "insufficient_stock").await;

    // Assert: every unit held, from several buckets; the refusal counts
    // all of them.
    assert_eq!(late["shortages"][0]["available"], 0, "{late}");
    let homes: BTreeSet<&str> = ids.iter().map(|id| &id[id.len() - 4..]).collect();
    assert!(homes.len() >= 2, "every hold in one bucket: {homes:?}");
    assert_eq!(app.counts("HOT").await, (10, 10, 0));
    for (n, id) in ids.iter().enumerate() {
        let res = app
            .commit(id, json!({ "order_id": format!("ord-{n}") }))
            .await;
        assert_eq!(res.status(), 201);
    }
    assert_eq!(app.counts("HOT").await, (0, 0, 0));
    // The ledger sees one SKU: its creation and 10 sales, on_hand after
    // each counted over all buckets, no transfers.
    let listed = app
        .eventually(Duration::from_secs(10), || async {
            let body: Value = app.ledger("HOT", "").await.json().await.unwrap();
            body["items"].as_array().unwrap().len() == 11
        })
        .await;
    assert!(listed, "the ledger lacks rows of HOT");
    let body: Value = app.ledger("HOT", "").await.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    let after: Vec<i64> = items
        .iter()
        .map(|i| i["on_hand_after"].as_i64().unwrap())
        .collect();
    assert_eq!(after, (0..=10).collect::<Vec<_>>(), "{body}");
    assert_eq!(items[10]["kind"], "created");
    assert!(items[..10].iter().all(|i| i["kind"] == "commit"), "{body}");
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn a_line_larger_than_any_bucket_gathers_the_units_it_needs() {
    // Arrange: 1 unit in each of 4 buckets.
    let app = spawn_partitioned().await;
    spread(&app, "HOT", 4, 4).await;
    assert_eq!(
        per_bucket(&app, "HOT", 4).await,
        vec![(1, 1), (1, 1), (1, 1), (1, 1)]
    );

    // Act
    let three = reserve_one(&app, "HOT", 3).await;
    let two = reserve_one(&app, "HOT", 2).await;
    let last = reserve_one(&app, "HOT", 1).await;

    // Assert: 3 of the 4 in one hold, the last unit sold too.
    assert_eq!(three.status(), 201, "{}", three.text().await.unwrap());
    let body = assert_problem(two, 409, "insufficient_stock").await;
    assert_eq!(body["shortages"][0]["available"], 1, "{body}");
    assert_eq!(last.status(), 201, "{}", last.text().await.unwrap());
    assert_eq!(app.counts("HOT").await, (4, 4, 0));
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn a_customer_limit_holds_over_buckets() {
    // Arrange
    let app = spawn_partitioned().await;
    spread(&app, "HOT", 100, 4).await;
    let res = app.put_sku("HOT", json!({ "per_customer_limit": 2 })).await;
    assert_eq!(res.status(), 200);

    // Act: c-1 holds 1, then 1, then asks for a third; in a basket too.
    let mut homes = BTreeSet::new();
    for _ in 0..2 {
        let res = app
            .reserve(json!({ "lines": [{ "sku": "HOT", "qty": 1 }], "customer_id": "c-1" }))
            .await;
        let body: Value = res.json().await.unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        homes.insert(id[id.len() - 4..].to_owned());
    }
    let third = app
        .reserve(json!({ "lines": [{ "sku": "HOT", "qty": 1 }], "customer_id": "c-1" }))
        .await;
    app.create_sku("OTHER", 10).await;
    let basket = app
        .reserve(
            json!({ "lines": [{ "sku": "OTHER", "qty": 1 }, { "sku": "HOT", "qty": 1 }],
                         "customer_id": "c-1" }),
        )
        .await;
    let other_customer = app
        .reserve(json!({ "lines": [{ "sku": "HOT", "qty": 2 }], "customer_id": "c-2" }))
        .await;

    // Assert: the customer's lines go to one bucket, where the count is.
    assert_eq!(homes.len(), 1, "{homes:?}");
    assert_problem(third, 409, "per_customer_limit_exceeded").await;
    assert_problem(basket, 409, "per_customer_limit_exceeded").await;
    assert_eq!(other_customer.status(), 201);
    assert_eq!(app.counts("HOT").await, (100, 4, 96));
    // The bucket count may not change under a limit (customers' counts
    // would move); it may once the limit goes.
    let res = app.put_sku("HOT", json!({ "buckets": 2 })).await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert!(body.to_string().contains("per_customer_limit"), "{body}");
    assert_eq!(app.sku("HOT").await["buckets"], 4);
    let res = app
        .put_sku("HOT", json!({ "buckets": 2, "per_customer_limit": null }))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(app.counts("HOT").await, (100, 4, 96));
}

#[tokio::test]
async fn settings_a_spread_sku_cannot_take_are_refused_and_change_nothing() {
    let app = spawn_partitioned().await;
    app.create_sku("BO", 5).await;
    let res = app.put_sku("BO", json!({ "backorder_limit": 3 })).await;
    assert_eq!(res.status(), 200);
    for (body, field) in [
        (json!({ "buckets": 2 }), "buckets"),
        (json!({ "buckets": 5 }), "buckets"),
        (json!({ "buckets": 0 }), "buckets"),
        (json!({ "buckets": "2" }), "buckets"),
    ] {
        let res = app.put_sku("BO", body.clone()).await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert!(problem.to_string().contains(field), "{body}: {problem}");
    }
    let res = app
        .put_sku(
            "NEW",
            json!({ "on_hand": 5, "buckets": 2, "backorder_limit": 1 }),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    assert_eq!(app.get_sku("NEW").await.status(), 404);
    let view = app.sku("BO").await;
    assert_eq!(view["backorder_limit"], 3, "{view}");
    assert!(view.get("buckets").is_none(), "not spread: {view}");
    // Buckets and a new per-customer limit in one PUT: the limit must wait
    // until every instance routes customers to their buckets.
    let res = app
        .put_sku(
            "LTD",
            json!({ "on_hand": 5, "buckets": 2, "per_customer_limit": 1 }),
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;
    assert_eq!(app.get_sku("LTD").await.status(), 404);
}

#[tokio::test]
async fn a_spread_skus_on_hand_changes_by_adjustments_only() {
    // Arrange: 1 unit in each of 4 buckets.
    let app = spawn_partitioned().await;
    spread(&app, "HOT", 4, 4).await;

    // A retry of the PUT that spread it (its answer lost) is no change.
    let again = app
        .put_sku("HOT", json!({ "on_hand": 4, "buckets": 4 }))
        .await;
    assert_eq!(again.status(), 200, "{}", again.text().await.unwrap());

    // Act
    let put = app.put_sku("HOT", json!({ "on_hand": 10 })).await;
    let take = app
        .adjust(
            "HOT",
            json!({ "adjustment_id": "adj-1", "delta": -3, "reason": "damaged" }),
        )
        .await;
    let too_many = app
        .adjust("HOT", json!({ "adjustment_id": "adj-2", "delta": -2 }))
        .await;

    // Assert: an absolute on_hand is refused (units move between buckets
    // while a total is read); a decrease gathers what it needs into bucket
    // 0, and one beyond the SKU's units is refused with its totals.
    let body = assert_problem(put, 422, "validation_failed").await;
    assert!(body.to_string().contains("adjustments"), "{body}");
    let status = take.status();
    let view: Value = take.json().await.unwrap();
    assert_eq!(status, 201, "{view}");
    assert_eq!(
        (&view["on_hand"], &view["available"]),
        (&json!(1), &json!(1)),
        "{view}"
    );
    let body = assert_problem(too_many, 409, "insufficient_stock").await;
    assert_eq!(body["shortages"][0]["available"], 1, "{body}");
    assert_eq!(app.counts("HOT").await, (1, 0, 1));
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn a_repair_keeps_a_spread_the_ledger_has_not_recorded_yet() {
    // Arrange: a spread SKU whose spread the ledger does not have (as when
    // the PUT's entry is still on its way to Postgres).
    let app = spawn_partitioned().await;
    spread(&app, "HOT", 8, 4).await;
    sqlx::query("UPDATE skus SET buckets = 1, bucket_span = 1 WHERE sku = 'HOT'")
        .execute(app.db())
        .await
        .unwrap();

    // Act: a repair (as an instance starting up makes).
    let res = app.reconcile(json!({ "repair": true })).await;
    assert_eq!(res.status(), 200);

    // Assert: still spread, every bucket counted.
    let view = app.sku("HOT").await;
    assert_eq!(
        (&view["buckets"], &view["on_hand"]),
        (&json!(4), &json!(8)),
        "{view}"
    );
    let res: Value = app.availability(&["HOT"]).await.json().await.unwrap();
    assert_eq!(res["items"][0]["available"], 8, "{res}");
    // And once every transfer is recorded, the buckets agree with it.
    assert!(all_recorded(&app).await, "outbox entries not recorded");
    assert_eq!(drifted(&app).await, json!([]));
    assert_eq!(app.counts("HOT").await, (8, 0, 8));
}

/// Waits until every outbox entry of every partition is in the ledger.
async fn all_recorded(app: &TestApp) -> bool {
    app.eventually(Duration::from_secs(10), || async {
        let engine = &app.stock.engine;
        for p in engine.partitions().all() {
            let mark = app.stock.ledger.watermark(p).await.unwrap();
            if !engine.outbox_after(p, mark, 1).await.unwrap().is_empty() {
                return false;
            }
        }
        true
    })
    .await
}

#[tokio::test]
async fn each_bucket_is_rebuilt_from_the_ledger_with_its_share() {
    // Arrange: 20 units over 4 buckets, 5 sold from whichever bucket, a
    // hold of 2 live, everything recorded.
    let app = spawn_partitioned().await;
    spread(&app, "HOT", 20, 4).await;
    for n in 0..5 {
        let res = reserve_one(&app, "HOT", 1).await;
        let body: Value = res.json().await.unwrap();
        let res = app
            .commit(
                body["id"].as_str().unwrap(),
                json!({ "order_id": format!("o-{n}") }),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let _live = app.hold(&[("HOT", 2)]).await;
    assert!(all_recorded(&app).await, "outbox entries not recorded");
    assert_eq!(app.persisted_on_hand("HOT").await, Some(15));
    let before = per_bucket(&app, "HOT", 4).await;

    // Act: Redis loses every key of this deployment.
    app.lose_every_key().await;

    // Assert: each bucket has its share back (the lost hold's units free).
    let rebuilt = app
        .eventually(Duration::from_secs(10), || async {
            app.request(Method::GET, "/readyz", None, None)
                .await
                .status()
                == 200
                && app.get_sku("HOT").await.status() == 200
        })
        .await;
    assert!(rebuilt, "not rebuilt");
    assert_eq!(app.counts("HOT").await, (15, 0, 15));
    assert_eq!(app.sku("HOT").await["buckets"], 4);
    let after = per_bucket(&app, "HOT", 4).await;
    let on_hand = |v: &[(i64, i64)]| v.iter().map(|b| b.1).collect::<Vec<_>>();
    assert_eq!(on_hand(&after), on_hand(&before), "{before:?} -> {after:?}");
    assert_eq!(drifted(&app).await, json!([]));
    // And every unit still sells.
    for _ in 0..15 {
        assert_eq!(reserve_one(&app, "HOT", 1).await.status(), 201);
    }
    assert_problem(reserve_one(&app, "HOT", 1).await, 409, "insufficient_stock").await;
}

/// transfer.lua as the service loads it (common.lua in front).
fn transfer_script() -> redis::Script {
    redis::Script::new(&format!(
        "{}\n{}",
        include_str!("../../lua/common.lua"),
        include_str!("../../lua/transfer.lua")
    ))
}

/// HOT with 10 units over 2 buckets: the partitions of its buckets 0 and 1.
async fn two_buckets(app: &TestApp) -> (Partition, Partition) {
    spread(app, "HOT", 10, 2).await;
    let parts = app.stock.engine.partitions();
    let sku = Sku::parse("HOT").unwrap();
    (parts.bucket(&sku, 0), parts.bucket(&sku, 1))
}

/// Runs one step of transfer `id` of 3 units of HOT in partition `p`.
async fn transfer_step(
    app: &TestApp,
    p: Partition,
    op: &str,
    id: &str,
    to: Partition,
) -> Vec<String> {
    let part = app.stock.engine.keys().part(p);
    let mut redis = app.redis().await;
    transfer_script()
        .key(part.avail())
        .arg(part.base())
        .arg(op)
        .arg(id)
        .arg("HOT")
        .arg(3)
        .arg(to.0)
        .invoke_async(&mut redis)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_transfers_units_arrive_only_once_its_take_is_in_the_ledger() {
    // Arrange: 10 units over 2 buckets; no drain step runs on its own.
    let app = spawn_partitioned_with(|s| s.reconciler.drain_interval_ms = 3_600_000).await;
    spread(&app, "HOT", 10, 2).await;
    let engine = &app.stock.engine;
    let sku = Sku::parse("HOT").unwrap();
    let (b0, b1) = (
        engine.partitions().bucket(&sku, 0),
        engine.partitions().bucket(&sku, 1),
    );
    let before = per_bucket(&app, "HOT", 2).await;

    // Act: bucket 1 gathers 2 more from bucket 0.
    let moved = engine.transfer(&sku, b0, b1, 2).await.unwrap();

    // Assert: the take was recorded before the units arrived (a source
    // that loses the take with its last writes is rebuilt with it).
    assert_eq!(moved, 2);
    let after = per_bucket(&app, "HOT", 2).await;
    assert_eq!((after[0].1, after[1].1), (before[0].1 - 2, before[1].1 + 2));
    let takes: Vec<(i64, String)> = sqlx::query_as(
        "SELECT delta, outbox_partition FROM stock_movements
         WHERE sku = 'HOT' AND kind = 'transfer' AND delta = -2",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    assert!(takes.iter().any(|(_, p)| *p == b0.name()), "{takes:?}");
    assert_eq!(app.counts("HOT").await, (10, 0, 10));
}

#[tokio::test]
async fn a_transfer_whose_give_the_ledger_has_is_not_given_twice() {
    // Arrange: a transfer of 3 units taken and given, its give recorded;
    // then the destination loses the give's mark (a restart that lost its
    // last writes, rebuilt from the ledger, which has the give), and the
    // source still has the transfer pending.
    let app = spawn_partitioned().await;
    let (from, to) = two_buckets(&app).await;
    let engine = &app.stock.engine;
    let take = transfer_step(&app, from, "take", "t-given", to).await;
    assert_eq!(take[..2], ["ok", "3"]);
    assert_eq!(transfer_step(&app, to, "give", "t-given", to).await, ["ok"]);
    let recorded = app
        .eventually(Duration::from_secs(10), || async {
            app.stock
                .ledger
                .transfer_recorded("HOT", "t-given")
                .await
                .unwrap()
                == (true, true)
        })
        .await;
    assert!(recorded, "the give was not recorded");
    let mark = format!("{}marks:xfer:t-given", engine.keys().part(to).base());
    let mut redis = app.redis().await;
    let _: () = redis::cmd("DEL")
        .arg(mark)
        .query_async(&mut redis)
        .await
        .unwrap();

    // Act: the reaper finds the transfer stalled.
    let done = app
        .eventually(Duration::from_secs(15), || async {
            engine.stalled_transfers(from).await.unwrap().is_empty()
                && engine.stalled_transfers(to).await.unwrap().is_empty()
        })
        .await;

    // Assert: finished without a second give.
    assert!(done, "the transfer stayed pending");
    assert_eq!(app.counts("HOT").await, (10, 0, 10));
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn a_transfer_cut_off_after_its_take_is_finished_by_the_reaper() {
    // Arrange: 10 units over 2 buckets.
    let app = spawn_partitioned().await;
    let (from, to) = two_buckets(&app).await;

    // Act: a transfer's take runs, and its instance stops there.
    let reply = transfer_step(&app, from, "take", "t-cut-off", to).await;
    assert_eq!(reply[..2], ["ok", "3"]);
    assert_eq!(app.counts("HOT").await, (7, 0, 7), "3 units on their way");

    // Assert: the reaper gives them (once) and the counts add up again.
    let finished = app
        .eventually(Duration::from_secs(15), || async {
            app.counts("HOT").await == (10, 0, 10)
        })
        .await;
    assert!(finished, "the transfer was not finished");
    assert_eq!(
        per_bucket(&app, "HOT", 2)
            .await
            .iter()
            .map(|b| b.1)
            .sum::<i64>(),
        10
    );
    assert_eq!(drifted(&app).await, json!([]));
    let recorded = app
        .eventually(Duration::from_secs(10), || async {
            app.persisted_on_hand("HOT").await == Some(10)
        })
        .await;
    assert!(recorded);
}

#[tokio::test]
async fn a_flash_sale_over_four_buckets_sells_exactly_the_stock() {
    // Arrange: 100 units over 4 buckets; the balancer runs as in production
    // (every second) while 300 buyers come at once, half of them signed in
    // (their lines go to their own bucket and gather into it), half not
    // (a bucket at random, then the others).
    let app = spawn_app_with(|s| s.redis.partitions = 4).await;
    let res = app
        .put_sku("HOT", json!({ "on_hand": 100, "buckets": 4 }))
        .await;
    assert_eq!(res.status(), 201);

    // Act
    let buyers = (0..300).map(|n| {
        let app = &app;
        async move {
            let mut body = json!({ "lines": [{ "sku": "HOT", "qty": 1 }] });
            if n % 2 == 0 {
                body["customer_id"] = json!(format!("c-{n}"));
            }
            app.reserve(body).await.status().as_u16()
        }
    });
    let answers = futures_util::future::join_all(buyers).await;

    // Assert: every unit sold once, none left while a buyer was refused.
    let held = answers.iter().filter(|s| **s == 201).count();
    let short = answers.iter().filter(|s| **s == 409).count();
    assert_eq!((held, short), (100, 200), "{answers:?}");
    assert_eq!(app.counts("HOT").await, (100, 100, 0));
    assert_eq!(drifted(&app).await, json!([]));
}

#[tokio::test]
async fn a_spread_skus_live_holds_are_listed_from_every_bucket_soonest_first() {
    // Arrange: 2 holds in each of 4 buckets (a customer's line goes to the
    // customer's bucket), their expiries interleaved across buckets, and a
    // scan of at most 3 hold records per partition.
    let app = spawn_partitioned_with(|s| s.limits.holds_scan = 3).await;
    spread(&app, "HOT", 40, 4).await;
    let parts = app.stock.engine.partitions();
    let customer_in = |bucket: u16, nth: usize| {
        (0..)
            .map(|i| format!("c{i}"))
            .filter(|c| parts.bucket_of_customer(c, 4) == bucket)
            .nth(nth)
            .unwrap()
    };
    let hold = |customer: String, ttl: i64| {
        let app = &app;
        async move {
            let body = json!({ "lines": [{ "sku": "HOT", "qty": 1 }], "customer_id": customer, "ttl_seconds": ttl });
            body_of(app.reserve(body).await, 201).await;
            customer
        }
    };
    let mut by_expiry = Vec::new();
    for b in 0..4u16 {
        let ttl = 100 * (i64::from(b) + 1);
        by_expiry.push((ttl, hold(customer_in(b, 0), ttl).await));
        by_expiry.push((ttl + 400, hold(customer_in(b, 1), ttl + 400).await));
    }
    by_expiry.sort();
    let listed = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["customer_id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Act
    let res = app
        .request(Method::GET, "/v1/skus/HOT/holds", Some(ADMIN), None)
        .await;

    // Assert: every bucket read, the order over all of them.
    let page = body_of(res, 200).await;
    let all: Vec<String> = by_expiry.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(listed(&page), all, "{page}");
    assert_eq!(
        (&page["total"], &page["complete"]),
        (&json!(8), &json!(true))
    );
    assert_eq!(page["scanned"], 8, "{page}");

    // Act: two more in bucket 0, expiring before its second: bucket 0 now
    // has 4 records, one more than the scan reads.
    let early = [
        hold(customer_in(0, 2), 150).await,
        hold(customer_in(0, 3), 250).await,
    ];
    let res = app
        .request(Method::GET, "/v1/skus/HOT/holds", Some(ADMIN), None)
        .await;

    // Assert: only what is known to be soonest: before bucket 0's first
    // record not read (500 s), nothing from then on from the other buckets.
    let page = body_of(res, 200).await;
    let soonest = vec![
        customer_in(0, 0),
        early[0].clone(),
        customer_in(1, 0),
        early[1].clone(),
        customer_in(2, 0),
        customer_in(3, 0),
    ];
    assert_eq!(listed(&page), soonest, "{page}");
    assert_eq!(
        (&page["total"], &page["complete"]),
        (&json!(6), &json!(false))
    );
    assert_eq!(page["scanned"], 9, "{page}");
}
