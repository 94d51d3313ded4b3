//! `/v1/admin/webhooks`: events delivered by POST to a local receiver that
//! answers, fails, times out, answers slowly or is down.

use crate::helpers::{
    assert_problem, body_of, spawn_app_on, spawn_app_with, TestApp, ADMIN, STOREFRONT,
};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::Method;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use stockhold::configuration::Settings;

/// What the receiver does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Ok,
    Fail,
    /// Answers 200 after this long.
    Slow(Duration),
}

/// A request the receiver got (and answered 2xx).
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

#[derive(Default)]
struct Script {
    /// Answers for the next requests, in turn; then Ok.
    next: Vec<Answer>,
    /// Answer every request this way (after `next`).
    always: Option<Answer>,
    received: Vec<Received>,
    attempts: usize,
}

/// A local webhook receiver on a port of its own, which can go down and
/// come back on the same port.
struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    server: Option<actix_web::dev::ServerHandle>,
}

async fn receive(req: HttpRequest, body: String, script: web::Data<Mutex<Script>>) -> HttpResponse {
    let answer = {
        let mut s = script.lock().unwrap();
        s.attempts += 1;
        if s.next.is_empty() {
            s.always.unwrap_or(Answer::Ok)
        } else {
            s.next.remove(0)
        }
    };
    match answer {
        Answer::Fail => return HttpResponse::InternalServerError().finish(),
        Answer::Slow(d) => tokio::time::sleep(d).await,
        Answer::Ok => {}
    }
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    script.lock().unwrap().received.push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body,
    });
    HttpResponse::NoContent().finish()
}

fn listener(addr: SocketAddr) -> TcpListener {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(128).unwrap();
    socket.into()
}

impl Receiver {
    async fn start() -> Receiver {
        let mut r = Receiver {
            addr: "127.0.0.1:0".parse().unwrap(),
            script: Arc::default(),
            server: None,
        };
        r.up();
        r
    }

    /// Starts listening (again, on the same port).
    fn up(&mut self) {
        let l = listener(self.addr);
        self.addr = l.local_addr().unwrap();
        let data = web::Data::from(self.script.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(l)
        .unwrap()
        .run();
        self.server = Some(server.handle());
        tokio::spawn(server);
    }

    /// Stops listening: connections are refused.
    async fn down(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop(false).await;
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    fn set(&self, change: impl FnOnce(&mut Script)) {
        change(&mut self.script.lock().unwrap());
    }

    fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    fn attempts(&self) -> usize {
        self.script.lock().unwrap().attempts
    }

    /// The events received so far, once there are `n` (within `within`).
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got
                    .iter()
                    .map(|r| serde_json::from_str(&r.body).unwrap())
                    .collect();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn fast(s: &mut Settings) {
    s.webhooks.timeout_ms = 1000;
    s.webhooks.max_backoff_seconds = 1;
}

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let res = app
        .request(Method::POST, "/v1/admin/webhooks", Some(ADMIN), Some(body))
        .await;
    body_of(res, 201).await
}

async fn webhook(app: &TestApp, id: &str) -> Value {
    let res = app
        .request(
            Method::GET,
            &format!("/v1/admin/webhooks/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    body_of(res, 200).await
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let res = app
        .request(
            Method::GET,
            &format!("/v1/admin/webhooks/{id}/deliveries?limit=1000"),
            Some(ADMIN),
            None,
        )
        .await;
    body_of(res, 200).await["items"].as_array().unwrap().clone()
}

/// The reservation ids of the `hold.created` events among `events`.
fn created(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "hold.created")
        .map(|e| e["reservation_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_subscription_receives_its_events_signed_and_in_order() {
    let app = spawn_app_with(fast).await;
    app.create_sku("WH-A", 2).await;
    let receiver = Receiver::start().await;
    let hook = subscribe(
        &app,
        json!({ "url": receiver.url(), "types": ["hold.created", "hold.released", "sku.out_of_stock"],
                "description": "stock alerts" }),
    )
    .await;
    assert_eq!(hook["status"], "active");
    assert_eq!(hook["description"], "stock alerts");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{hook}");

    let a = app.hold(&[("WH-A", 1)]).await;
    let b = app.hold(&[("WH-A", 1)]).await;
    assert_eq!(app.release(&a).await.status(), 200);
    app.adjust("WH-A", json!({ "adjustment_id": "wh-1", "delta": 1 }))
        .await;
    let events = receiver.wait_for(4, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "hold.created",
            "hold.created",
            "sku.out_of_stock",
            "hold.released"
        ],
        "(sku.adjusted and sku.back_in_stock are not its types)"
    );
    assert_eq!(created(&events), [a.clone(), b]);
    for r in receiver.received() {
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(r.id, body["id"].as_str().unwrap());
        let ts: i64 = r.timestamp.parse().unwrap();
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
        // Standard Webhooks: v1,<base64 HMAC-SHA256 of "id.timestamp.body">.
        assert_eq!(
            r.signature,
            stockhold::domain::signature(&secret, &r.id, ts, &r.body).unwrap()
        );
    }
    let id = hook["id"].as_str().unwrap();
    assert!(
        app.eventually(Duration::from_secs(5), || async {
            webhook(&app, id).await["delivered"] == 4
        })
        .await
    );
    let rows = deliveries(&app, id).await;
    assert_eq!(rows.len(), 4, "{rows:#?}");
    assert!(rows
        .iter()
        .all(|d| d["delivered"] == true && d["status"] == 204));
    assert_eq!(rows[3]["event_type"], "hold.created", "newest first");
}

#[tokio::test]
async fn a_failing_or_slow_receiver_is_retried_and_still_gets_every_event_in_order() {
    let app = spawn_app_with(fast).await;
    app.create_sku("WH-R", 100).await;
    let receiver = Receiver::start().await;
    // Two failures, one answer after the timeout, one slow answer in time.
    receiver.set(|s| {
        s.next = vec![
            Answer::Fail,
            Answer::Fail,
            Answer::Slow(Duration::from_millis(1500)),
            Answer::Slow(Duration::from_millis(300)),
        ]
    });
    let hook = subscribe(
        &app,
        json!({ "url": receiver.url(), "types": ["hold.created"] }),
    )
    .await;
    let mut holds = Vec::new();
    for _ in 0..10 {
        holds.push(app.hold(&[("WH-R", 1)]).await);
    }
    let events = receiver.wait_for(11, Duration::from_secs(20)).await;
    // The answer after the timeout was a failed attempt for stockhold, but
    // the receiver had the event: it gets it again (at least once), with
    // the same webhook-id to dedupe by.
    let mut seen = std::collections::HashSet::new();
    let events: Vec<Value> = events
        .into_iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(receiver.received().len(), 11, "one event twice");
    assert_eq!(created(&events), holds, "each, in order");
    let id = hook["id"].as_str().unwrap();
    assert!(
        app.eventually(Duration::from_secs(5), || async {
            deliveries(&app, id).await.len() == 13
        })
        .await
    );
    let rows = deliveries(&app, id).await;
    let failed: Vec<&Value> = rows.iter().filter(|d| d["delivered"] == false).collect();
    assert_eq!(failed.len(), 3, "{rows:#?}");
    assert!(failed.iter().any(|d| d["status"] == 500));
    assert!(failed
        .iter()
        .any(|d| d["error"].as_str().unwrap_or("").contains("no answer")));
    // The first event's attempts: 1, 2, 3 failed, 4 delivered.
    let first: Vec<i64> = rows
        .iter()
        .rev()
        .filter(|d| d["event_id"] == events[0]["id"])
        .map(|d| d["attempt"].as_i64().unwrap())
        .collect();
    assert_eq!(first, [1, 2, 3, 4]);
    assert_eq!(webhook(&app, id).await["failures"], 0);
}

#[tokio::test]
async fn a_receiver_that_was_down_gets_everything_it_missed_once_back() {
    let app = spawn_app_with(fast).await;
    app.create_sku("WH-D", 100).await;
    let mut receiver = Receiver::start().await;
    let hook = subscribe(
        &app,
        json!({ "url": receiver.url(), "types": ["hold.created"] }),
    )
    .await;
    receiver.down().await;
    let mut holds = Vec::new();
    for _ in 0..20 {
        holds.push(app.hold(&[("WH-D", 1)]).await);
    }
    let id = hook["id"].as_str().unwrap();
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            webhook(&app, id).await["failures"].as_i64().unwrap() >= 2
        })
        .await,
        "attempts fail while it is down"
    );
    let down = webhook(&app, id).await;
    assert!(down["failing_since"].is_string(), "{down}");
    assert!(down["next_attempt_at"].is_string(), "{down}");
    receiver.up();
    let events = receiver.wait_for(20, Duration::from_secs(15)).await;
    assert_eq!(created(&events), holds);
    let rows = deliveries(&app, id).await;
    assert!(rows.iter().any(|d| d["error"]
        .as_str()
        .unwrap_or("")
        .contains("could not connect")));
}

#[tokio::test]
async fn a_subscription_failing_too_long_is_paused_until_resumed() {
    let app = spawn_app_with(|s| {
        fast(s);
        s.webhooks.pause_after_seconds = 2;
    })
    .await;
    app.create_sku("WH-P", 100).await;
    let receiver = Receiver::start().await;
    receiver.set(|s| s.always = Some(Answer::Fail));
    let hook = subscribe(&app, json!({ "url": receiver.url() })).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let held = app.hold(&[("WH-P", 1)]).await;
    assert!(
        app.eventually(Duration::from_secs(15), || async {
            webhook(&app, &id).await["status"] == "paused"
        })
        .await
    );
    let paused = webhook(&app, &id).await;
    assert!(
        paused["paused_reason"].as_str().unwrap().contains("failed"),
        "{paused}"
    );
    // Paused: no more attempts.
    let attempts = receiver.attempts();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.attempts(), attempts);

    receiver.set(|s| s.always = None);
    let res = app
        .request(
            Method::POST,
            &format!("/v1/admin/webhooks/{id}/resume"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(body_of(res, 200).await["status"], "active");
    let events = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(created(&events), [held]);
}

#[tokio::test]
async fn two_instances_deliver_each_event_once() {
    let app = spawn_app_with(fast).await;
    let second = spawn_app_on(app.settings.clone()).await;
    app.create_sku("WH-2", 100).await;
    let receiver = Receiver::start().await;
    subscribe(
        &app,
        json!({ "url": receiver.url(), "types": ["hold.created"] }),
    )
    .await;
    let mut holds = Vec::new();
    for i in 0..30 {
        let on = if i % 2 == 0 { &app } else { &second };
        holds.push(on.hold(&[("WH-2", 1)]).await);
    }
    let events = receiver.wait_for(30, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(created(&receiver.wait_for(30, Duration::ZERO).await), holds);
    assert_eq!(events.len(), 30);
}

#[tokio::test]
async fn subscriptions_are_listed_deleted_and_checked() {
    let app = spawn_app_with(fast).await;
    let receiver = Receiver::start().await;
    let hook = subscribe(
        &app,
        json!({ "url": receiver.url(), "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
    )
    .await;
    assert_eq!(hook["secret"], "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(hook["types"], json!([]));
    let res = app
        .request(Method::GET, "/v1/admin/webhooks", Some(ADMIN), None)
        .await;
    let list = body_of(res, 200).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    for (body, field) in [
        (json!({}), "url"),
        (json!({ "url": "ftp://x/" }), "url"),
        (json!({ "url": "not a url" }), "url"),
        (
            json!({ "url": receiver.url(), "types": ["hold.made"] }),
            "types[0]",
        ),
        (
            json!({ "url": receiver.url(), "types": "hold.created" }),
            "types",
        ),
        (json!({ "url": receiver.url(), "secret": "abc" }), "secret"),
        (json!({ "url": receiver.url(), "colour": "red" }), "colour"),
    ] {
        let res = app
            .request(
                Method::POST,
                "/v1/admin/webhooks",
                Some(ADMIN),
                Some(body.clone()),
            )
            .await;
        let problem = assert_problem(res, 422, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let res = app
        .request(
            Method::POST,
            "/v1/admin/webhooks",
            Some(STOREFRONT),
            Some(json!({ "url": receiver.url() })),
        )
        .await;
    assert_problem(res, 403, "forbidden").await;
    let res = app
        .request(Method::GET, "/v1/admin/webhooks/nope", Some(ADMIN), None)
        .await;
    assert_problem(res, 404, "not_found").await;
    let res = app
        .request(
            Method::GET,
            &format!(
                "/v1/admin/webhooks/{}/deliveries?limit=0",
                hook["id"].as_str().unwrap()
            ),
            Some(ADMIN),
            None,
        )
        .await;
    assert_problem(res, 422, "validation_failed").await;

    // Deleted: nothing more is sent.
    let path = format!("/v1/admin/webhooks/{}", hook["id"].as_str().unwrap());
    let res = app.request(Method::DELETE, &path, Some(ADMIN), None).await;
    assert_eq!(res.status(), 204);
    let res = app.request(Method::GET, &path, Some(ADMIN), None).await;
    assert_problem(res, 404, "not_found").await;
    app.create_sku("WH-X", 1).await;
    app.hold(&[("WH-X", 1)]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.attempts(), 0);
    let list = body_of(
        app.request(Method::GET, "/v1/admin/webhooks", Some(ADMIN), None)
            .await,
        200,
    )
    .await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn a_holds_events_arrive_in_order_even_when_their_skus_differ() {
    let app = spawn_app_with(fast).await;
    // Two SKUs of one partition (a stream: events of several partitions
    // have no order between them).
    let keys = app.stock.engine.keys();
    let part = |s: &str| keys.of_sku(&stockhold::domain::Sku::parse(s).unwrap());
    let other = (2..100)
        .map(|i| format!("WH-O{i}"))
        .find(|s| part(s) == part("WH-O1"))
        .unwrap();
    app.create_sku("WH-O1", 10).await;
    app.create_sku(&other, 10).await;
    let receiver = Receiver::start().await;
    subscribe(
        &app,
        json!({ "url": receiver.url(), "types": ["hold.created", "hold.changed", "hold.released"] }),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let id = app.hold(&[("WH-O1", 1)]).await;
        // Its lines move to another SKU: the next events share no SKU with
        // the first.
        let res = app
            .patch_reservation(
                &id,
                json!({ "lines": [{ "sku": "WH-O1", "qty": 0 }, { "sku": other, "qty": 1 }] }),
            )
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(app.release(&id).await.status(), 200);
        ids.push(id);
    }
    let events = receiver.wait_for(30, Duration::from_secs(15)).await;
    for id in &ids {
        let kinds: Vec<&str> = events
            .iter()
            .filter(|e| e["reservation_id"] == id.as_str())
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["hold.created", "hold.changed", "hold.released"],
            "{id}"
        );
    }
}

#[tokio::test]
async fn events_trimmed_before_delivery_are_recorded_as_a_gap() {
    let app = spawn_app_with(fast).await;
    app.create_sku("WH-G", 10).await;
    let receiver = Receiver::start().await;
    receiver.set(|s| s.always = Some(Answer::Fail));
    let hook = subscribe(
        &app,
        json!({ "url": receiver.url(), "types": ["hold.created"] }),
    )
    .await;
    let id = hook["id"].as_str().unwrap().to_owned();
    app.hold(&[("WH-G", 1)]).await;
    assert!(
        app.eventually(Duration::from_secs(10), || async {
            webhook(&app, &id).await["failures"].as_i64().unwrap() >= 1
        })
        .await
    );
    // Gone before the receiver is back (as the retention window does).
    app.trim_every_event().await;
    receiver.set(|s| s.always = None);
    let later = app.hold(&[("WH-G", 1)]).await;
    let events = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(created(&events), [later]);
    assert!(
        app.eventually(Duration::from_secs(5), || async {
            deliveries(&app, &id)
                .await
                .iter()
                .any(|d| d["event_type"] == "gap" && d["delivered"] == false)
        })
        .await,
        "{:#?}",
        deliveries(&app, &id).await
    );
}
