//! `GET /v1/events`: the stock events over Server-Sent Events, as they
//! happen and from a `Last-Event-ID`.

use crate::helpers::{
    assert_problem, body_of, spawn_app, spawn_app_with, TestApp, ADMIN, STOREFRONT,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

/// One SSE message: its `id` (the position after it), type and data.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub kind: String,
    pub data: Value,
}

/// An open event stream.
pub struct Sse {
    res: reqwest::Response,
    buf: String,
    /// The last `id` received (also from messages without data).
    pub position: String,
    /// Comments received (heartbeats).
    pub comments: usize,
}

impl Sse {
    /// Opens `/v1/events?{query}` with `key`, resuming after `last` if
    /// given; asserts it is a 200 event stream.
    pub async fn open(app: &TestApp, key: &str, query: &str, last: Option<&str>) -> Sse {
        let res = Self::request(app, key, query, last).await;
        assert_eq!(res.status(), 200, "{:?}", res.text().await);
        assert_eq!(
            res.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Sse {
            res,
            buf: String::new(),
            position: String::new(),
            comments: 0,
        }
    }

    pub async fn request(
        app: &TestApp,
        key: &str,
        query: &str,
        last: Option<&str>,
    ) -> reqwest::Response {
        let mut req = app
            .client
            .get(format!("{}/v1/events?{query}", app.address))
            .bearer_auth(key);
        if let Some(last) = last {
            req = req.header("Last-Event-ID", last);
        }
        req.send().await.expect("request sent")
    }

    /// The next event within `within`, or None.
    pub async fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        kind = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    } else if line.starts_with(':') {
                        self.comments += 1;
                    }
                }
                if let Some(id) = &id {
                    self.position = id.clone();
                }
                if let (Some(id), Some(kind), Some(data)) = (id, kind, data) {
                    return Some(Message { id, kind, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return None,
            }
        }
    }

    /// The next `n` events (each within 5 s), asserting they come.
    pub async fn take(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::new();
        for _ in 0..n {
            match self.next(Duration::from_secs(5)).await {
                Some(m) => out.push(m),
                None => panic!("only {} of {n} events came: {out:#?}", out.len()),
            }
        }
        out
    }

    /// Asserts no event comes within `within`.
    pub async fn nothing_for(&mut self, within: Duration) {
        if let Some(m) = self.next(within).await {
            panic!("unexpected event {m:#?}");
        }
    }

    /// Reads until the stream has sent its first message (its position).
    pub async fn ready(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.position.is_empty() {
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk())
                .await
                .expect("the stream's first message")
                .unwrap()
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        self.position = v.to_owned();
                    }
                }
            }
        }
    }
}

fn kinds(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.kind.as_str()).collect()
}

#[tokio::test]
async fn a_holds_life_is_told_as_it_happens_with_the_counts_after_each_step() {
    let app = spawn_app().await;
    app.create_sku("EV-A", 3).await;
    let mut sse = Sse::open(&app, ADMIN, "", None).await;
    sse.ready().await;

    let id = app.hold(&[("EV-A", 2)]).await;
    let m = sse.take(1).await;
    assert_eq!(kinds(&m), ["hold.created"]);
    let created = &m[0].data;
    assert_eq!(created["type"], "hold.created");
    assert_eq!(created["reservation_id"], id.as_str());
    assert_eq!(created["part"], false);
    assert_eq!(created["skus"], json!(["EV-A"]));
    assert_eq!(
        created["lines"],
        json!([{ "sku": "EV-A", "qty": 2, "available": 1 }])
    );
    assert!(created["id"].as_str().unwrap().starts_with("p"));
    assert!(created["time"].as_str().unwrap().ends_with('Z'));
    assert!(created["expires_at"].is_string());

    let res = app
        .patch_reservation(&id, json!({ "lines": [{ "sku": "EV-A", "qty": 3 }] }))
        .await;
    assert_eq!(res.status(), 200);
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["hold.changed", "sku.out_of_stock"]);
    assert_eq!(
        m[0].data["lines"],
        json!([{ "sku": "EV-A", "qty": 3, "available": 0 }])
    );
    assert_eq!(m[1].data["sku"], "EV-A");
    assert_eq!(m[1].data["available"], 0);
    assert_eq!(m[1].data["on_hand"], 3);

    assert_eq!(app.release(&id).await.status(), 200);
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["hold.released", "sku.back_in_stock"]);
    assert_eq!(
        m[0].data["lines"],
        json!([{ "sku": "EV-A", "qty": 3, "available": 3 }])
    );
    assert_eq!(m[1].data["available"], 3);

    let id = app.hold(&[("EV-A", 1)]).await;
    let res = app.commit(&id, json!({ "order_id": "ev-order-1" })).await;
    assert_eq!(res.status(), 201);
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["hold.created", "hold.committed"]);
    assert_eq!(m[1].data["order_id"], "ev-order-1");
    assert_eq!(
        m[1].data["lines"],
        json!([{ "sku": "EV-A", "qty": 1, "available": 2 }])
    );

    let res = app
        .adjust(
            "EV-A",
            json!({ "adjustment_id": "ev-adj-1", "delta": -2, "reason": "damaged" }),
        )
        .await;
    assert_eq!(res.status(), 201);
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["sku.adjusted", "sku.out_of_stock"]);
    let adjusted = &m[0].data;
    assert_eq!(adjusted["delta"], -2);
    assert_eq!(adjusted["on_hand"], 0);
    assert_eq!(adjusted["available"], 0);
    assert_eq!(adjusted["reason"], "adjustment");
    assert_eq!(adjusted["reference"], "ev-adj-1");
    assert_eq!(adjusted["note"], "damaged");

    // Ids are positions: each one later than the one before.
    let ids: Vec<&str> = m.iter().map(|m| m.id.as_str()).collect();
    assert_ne!(ids[0], ids[1]);
    sse.nothing_for(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_hold_that_runs_out_of_time_is_an_expiry_event() {
    let app = spawn_app().await;
    app.create_sku("EV-X", 5).await;
    let mut sse = Sse::open(&app, ADMIN, "types=hold.expired", None).await;
    sse.ready().await;
    let res = app
        .reserve(json!({ "lines": [{ "sku": "EV-X", "qty": 2 }], "ttl_seconds": 1 }))
        .await;
    let hold = body_of(res, 201).await;
    let m = sse.next(Duration::from_secs(6)).await.expect("an expiry");
    assert_eq!(m.kind, "hold.expired");
    assert_eq!(m.data["reservation_id"], hold["id"]);
    assert_eq!(
        m.data["lines"],
        json!([{ "sku": "EV-X", "qty": 2, "available": 5 }])
    );
}

#[tokio::test]
async fn a_client_resumes_after_the_last_event_it_saw_missing_nothing_and_repeating_nothing() {
    let app = spawn_app().await;
    app.create_sku("EV-R", 100).await;
    let mut sse = Sse::open(&app, ADMIN, "types=hold.created", None).await;
    sse.ready().await;
    let first = app.hold(&[("EV-R", 1)]).await;
    let seen = sse.take(1).await;
    assert_eq!(seen[0].data["reservation_id"], first.as_str());
    drop(sse);

    // Made while nobody listened.
    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(app.hold(&[("EV-R", 1)]).await);
    }
    let mut sse = Sse::open(&app, ADMIN, "types=hold.created", Some(&seen[0].id)).await;
    let got = sse.take(5).await;
    let ids: Vec<&str> = got
        .iter()
        .map(|m| m.data["reservation_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, missed.iter().map(String::as_str).collect::<Vec<_>>());
    // Then live.
    let live = app.hold(&[("EV-R", 1)]).await;
    let m = sse.take(1).await;
    assert_eq!(m[0].data["reservation_id"], live.as_str());
    sse.nothing_for(Duration::from_millis(300)).await;

    // The query parameter works as the header does.
    let mut sse = Sse::open(
        &app,
        ADMIN,
        &format!("types=hold.created&last_event_id={}", got[4].id),
        None,
    )
    .await;
    let m = sse.take(1).await;
    assert_eq!(m[0].data["reservation_id"], live.as_str());

    // A client that connected without an id and saw nothing resumes from
    // the position its stream began with.
    let mut quiet = Sse::open(&app, ADMIN, "types=hold.created", None).await;
    quiet.ready().await;
    let start = quiet.position.clone();
    drop(quiet);
    let after = app.hold(&[("EV-R", 1)]).await;
    let mut sse = Sse::open(&app, ADMIN, "types=hold.created", Some(&start)).await;
    let m = sse.take(1).await;
    assert_eq!(m[0].data["reservation_id"], after.as_str());
}

#[tokio::test]
async fn events_are_filtered_by_type_and_sku() {
    let app = spawn_app().await;
    app.create_sku("EV-F1", 1).await;
    app.create_sku("EV-F2", 1).await;
    let mut sse = Sse::open(
        &app,
        ADMIN,
        "types=sku.out_of_stock,hold.released&sku=EV-F2",
        None,
    )
    .await;
    sse.ready().await;
    app.hold(&[("EV-F1", 1)]).await;
    let id = app.hold(&[("EV-F2", 1)]).await;
    assert_eq!(app.release(&id).await.status(), 200);
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["sku.out_of_stock", "hold.released"]);
    assert_eq!(m[0].data["sku"], "EV-F2");
    sse.nothing_for(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_storefront_key_reads_the_sku_events_only() {
    let app = spawn_app().await;
    app.create_sku("EV-S", 1).await;
    let mut sse = Sse::open(&app, STOREFRONT, "", None).await;
    sse.ready().await;
    let id = app.hold(&[("EV-S", 1)]).await;
    assert_eq!(app.release(&id).await.status(), 200);
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["sku.out_of_stock", "sku.back_in_stock"]);

    let res = Sse::request(&app, STOREFRONT, "types=hold.created", None).await;
    assert_problem(res, 403, "forbidden").await;
    let res = app.request(Method::GET, "/v1/events", None, None).await;
    assert_problem(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn bad_parameters_are_422_listing_each() {
    let app = spawn_app().await;
    for (query, last, field) in [
        ("types=hold.made", None, "types"),
        ("sku=not%20a%20sku", None, "sku"),
        ("colour=red", None, "colour"),
        ("", Some("yesterday"), "last_event_id"),
        (
            "",
            Some("1-0.1-0.1-0.1-0.1-0.1-0.1-0.1-0.1-0"),
            "last_event_id",
        ),
        ("last_event_id=1-x", None, "last_event_id"),
    ] {
        let res = Sse::request(&app, ADMIN, query, last).await;
        let body = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(
            body["errors"][0]["field"], field,
            "{query} {last:?}: {body}"
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("S{i}")).collect();
    let res = Sse::request(&app, ADMIN, &format!("sku={}", many.join(",")), None).await;
    assert_problem(res, 422, "validation_failed").await;
}

#[tokio::test]
async fn a_position_whose_next_events_are_gone_is_410() {
    let app = spawn_app().await;
    app.create_sku("EV-G", 10).await;
    let mut sse = Sse::open(&app, ADMIN, "types=hold.created", None).await;
    sse.ready().await;
    app.hold(&[("EV-G", 1)]).await;
    let seen = sse.take(1).await;
    drop(sse);
    app.hold(&[("EV-G", 1)]).await;

    // Trimmed as the retention window does (here: everything).
    app.trim_every_event().await;
    let res = Sse::request(&app, ADMIN, "", Some(&seen[0].id)).await;
    let body = assert_problem(res, 410, "event_id_too_old").await;
    assert!(
        body["detail"].as_str().unwrap().contains("retention"),
        "{body}"
    );
}

#[tokio::test]
async fn after_redis_lost_its_data_an_older_position_is_410() {
    let app = spawn_app().await;
    app.create_sku("EV-L", 10).await;
    let mut sse = Sse::open(&app, ADMIN, "types=hold.created", None).await;
    sse.ready().await;
    app.hold(&[("EV-L", 1)]).await;
    let seen = sse.take(1).await;
    drop(sse);
    app.lose_every_key().await;
    assert!(
        app.eventually(Duration::from_secs(20), || async {
            // (a write: refused until the rebuild is done)
            app.reserve(json!({ "lines": [{ "sku": "EV-L", "qty": 1 }] }))
                .await
                .status()
                == 201
        })
        .await,
        "rebuilt"
    );
    let res = Sse::request(&app, ADMIN, "", Some(&seen[0].id)).await;
    assert_problem(res, 410, "event_id_too_old").await;
    // A new stream works.
    let mut sse = Sse::open(&app, ADMIN, "types=hold.created", None).await;
    sse.ready().await;
    app.hold(&[("EV-L", 1)]).await;
    sse.take(1).await;
}

#[tokio::test]
async fn drift_found_and_repaired_are_events() {
    let app = spawn_app().await;
    app.create_sku("EV-D", 10).await;
    let mut sse = Sse::open(&app, ADMIN, "types=drift.found,drift.repaired", None).await;
    sse.ready().await;
    app.tamper("EV-D", "on_hand", 7).await;
    body_of(app.reconcile(json!({ "skus": ["EV-D"] })).await, 200).await;
    body_of(
        app.reconcile(json!({ "skus": ["EV-D"], "repair": true }))
            .await,
        200,
    )
    .await;
    let m = sse.take(2).await;
    assert_eq!(kinds(&m), ["drift.found", "drift.repaired"]);
    for d in &m {
        assert_eq!(d.data["sku"], "EV-D");
        assert_eq!(d.data["expected_on_hand"], 10);
        assert_eq!(d.data["on_hand"], 7);
        assert_eq!(d.data["expected_held"], 0);
    }
}

#[tokio::test]
async fn a_quiet_stream_sends_heartbeats() {
    let app = spawn_app_with(|s| s.events.heartbeat_seconds = 1).await;
    let mut sse = Sse::open(&app, ADMIN, "", None).await;
    sse.ready().await;
    sse.nothing_for(Duration::from_millis(2500)).await;
    assert!(sse.comments >= 1, "{} heartbeats", sse.comments);
}

#[tokio::test]
async fn a_basket_over_several_partitions_is_one_hold_event_and_one_per_other_part() {
    let app = spawn_app_with(|s| s.redis.partitions = 4).await;
    let skus: Vec<String> = (0..8).map(|i| format!("EV-P{i}")).collect();
    for sku in &skus {
        app.create_sku(sku, 5).await;
    }
    let mut sse = Sse::open(
        &app,
        ADMIN,
        "types=hold.created,hold.changed,hold.committed",
        None,
    )
    .await;
    sse.ready().await;
    let lines: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 2)).collect();
    let id = app.hold(&lines).await;
    let keys = app.stock.engine.keys();
    let parts: std::collections::HashSet<u16> = skus
        .iter()
        .map(|s| keys.of_sku(&stockhold::domain::Sku::parse(s).unwrap()).0)
        .collect();
    assert!(parts.len() > 1, "the SKUs spread over partitions");
    let home = keys
        .home(&stockhold::domain::ReservationId::parse(&id).unwrap())
        .0;
    let n = parts.len() + usize::from(!parts.contains(&home));
    let created = sse.take(n).await;
    assert!(created.iter().all(|m| m.kind == "hold.created"));
    assert_eq!(
        created.iter().filter(|m| m.data["part"] == false).count(),
        1,
        "{created:#?}"
    );
    let mut held: Vec<String> = created
        .iter()
        .flat_map(|m| m.data["lines"].as_array().unwrap().clone())
        .map(|l| {
            assert_eq!(l["qty"], 2);
            assert_eq!(l["available"], 3);
            l["sku"].as_str().unwrap().to_owned()
        })
        .collect();
    held.sort();
    assert_eq!(held, skus);

    // A change of one line: the basket's own event, and its part's.
    let res = app
        .patch_reservation(&id, json!({ "lines": [{ "sku": "EV-P5", "qty": 1 }] }))
        .await;
    assert_eq!(res.status(), 200);
    let mut changed = Vec::new();
    while let Some(m) = sse.next(Duration::from_millis(700)).await {
        changed.push(m);
    }
    assert!(
        changed.iter().all(|m| m.kind == "hold.changed"),
        "{changed:#?}"
    );
    assert_eq!(
        changed.iter().filter(|m| m.data["part"] == false).count(),
        1,
        "{changed:#?}"
    );
    let line: Vec<&Value> = changed
        .iter()
        .flat_map(|m| m.data["lines"].as_array().unwrap())
        .filter(|l| l["sku"] == "EV-P5")
        .collect();
    assert_eq!(line, [&json!({ "sku": "EV-P5", "qty": 1, "available": 4 })]);

    let res = app.commit(&id, json!({})).await;
    assert!(res.status() == 201 || res.status() == 202);
    let committed = sse.take(n).await;
    assert!(committed.iter().all(|m| m.kind == "hold.committed"));
}

#[tokio::test]
async fn a_sku_dropping_to_its_low_stock_threshold_is_told_each_time_it_gets_there() {
    let app = spawn_app().await;
    let res = app
        .put_sku("EV-LOW", json!({ "on_hand": 10, "low_stock": 3 }))
        .await;
    assert_eq!(body_of(res, 201).await["low_stock"], 3);
    let mut sse = Sse::open(
        &app,
        ADMIN,
        "types=sku.low_stock,sku.out_of_stock,sku.back_in_stock",
        None,
    )
    .await;
    sse.ready().await;

    let big = app.hold(&[("EV-LOW", 6)]).await; // 4 left: above it
    sse.nothing_for(Duration::from_millis(300)).await;
    app.hold(&[("EV-LOW", 1)]).await; // 3 left: at it
    let m = sse.take(1).await;
    assert_eq!(kinds(&m), ["sku.low_stock"]);
    assert_eq!(m[0].data["available"], 3);
    assert_eq!(m[0].data["low_stock"], 3);
    assert_eq!(m[0].data["on_hand"], 10);
    app.hold(&[("EV-LOW", 1)]).await; // 2 left: still low, told once
    sse.nothing_for(Duration::from_millis(300)).await;
    let last = app.hold(&[("EV-LOW", 2)]).await; // none left
    assert_eq!(kinds(&sse.take(1).await), ["sku.out_of_stock"]);
    assert_eq!(app.release(&last).await.status(), 200); // 2: back, and low
    assert_eq!(kinds(&sse.take(1).await), ["sku.back_in_stock"]);
    assert_eq!(app.release(&big).await.status(), 200); // 8: above again
    sse.nothing_for(Duration::from_millis(300)).await;
    app.hold(&[("EV-LOW", 5)]).await; // 3 left: low again
    assert_eq!(kinds(&sse.take(1).await), ["sku.low_stock"]);

    // The threshold is a setting of the ledger: back after a rebuild.
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            app.persisted_on_hand("EV-LOW").await.is_some()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await; // (the drain)
    app.lose_every_key().await;
    assert!(
        app.eventually(Duration::from_secs(20), || async {
            let res = app.get_sku("EV-LOW").await;
            res.status() == 200 && res.json::<Value>().await.unwrap()["low_stock"] == 3
        })
        .await,
        "the threshold is restored"
    );
    // `null` removes it (once the rebuild lets writes in).
    assert!(
        app.eventually(Duration::from_secs(20), || async {
            app.put_sku("EV-LOW", json!({ "low_stock": null }))
                .await
                .status()
                == 200
        })
        .await
    );
    assert_eq!(app.sku("EV-LOW").await.get("low_stock"), None);
}

#[tokio::test]
async fn a_bad_low_stock_threshold_is_422_and_changes_nothing() {
    let app = spawn_app_with(|s| s.redis.partitions = 2).await;
    app.create_sku("EV-B", 5).await;
    for bad in [json!(0), json!(-1), json!("3"), json!(1.5)] {
        let res = app.put_sku("EV-B", json!({ "low_stock": bad })).await;
        let body = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(body["errors"][0]["field"], "low_stock", "{bad}: {body}");
    }
    let res = app
        .put_sku("EV-B", json!({ "buckets": 2, "low_stock": 2 }))
        .await;
    assert_problem(res, 422, "validation_failed").await;
    // Spread, then a threshold: refused by the SKU's state.
    let res = app.put_sku("EV-B", json!({ "buckets": 2 })).await;
    assert_eq!(res.status(), 200);
    let res = app.put_sku("EV-B", json!({ "low_stock": 2 })).await;
    let body = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "low_stock", "{body}");
    assert_eq!(app.sku("EV-B").await["low_stock"], Value::Null);
}
