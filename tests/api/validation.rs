//! Malformed requests: wrong types, out-of-range numbers, bad SKUs, too many
//! lines, not JSON, too large. Each gets a 4xx problem+json listing every
//! problem found, and changes nothing in Redis or Postgres.
//!
//! The table helpers (`Snapshot`, `check_refusal`, `Failures`) live here and
//! are shared with `auth` and `skus`.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Returns early with `Err(message)` unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

/// The request body limit of API.md.
const MIB: usize = 1 << 20;

/// What a request carries as its body.
#[derive(Debug, Clone)]
pub enum Payload {
    /// No body at all.
    Empty,
    /// A JSON value.
    Json(Value),
    /// These exact bytes, sent as `application/json`.
    Raw(Vec<u8>),
}

/// These exact bytes as the body.
pub fn raw(bytes: impl Into<Vec<u8>>) -> Payload {
    Payload::Raw(bytes.into())
}

/// A JSON body.
pub fn body(value: Value) -> Payload {
    Payload::Json(value)
}

/// A JSON object whose serialisation is larger than 1 MiB: a valid
/// reservation padded out with a long `customer_id`.
pub fn over_one_mib() -> Payload {
    body(json!({ "lines": [ { "sku": "A", "qty": 1 } ], "customer_id": "x".repeat(MIB) }))
}

/// `count` lines of one unit each of distinct (never set up) SKUs.
fn many_lines(count: usize) -> Value {
    (0..count)
        .map(|i| json!({ "sku": format!("S-{i}"), "qty": 1 }))
        .collect()
}

/// Sends a request with `headers` added; errors are returned, not panicked
/// on, so that a table can report them per case.
pub async fn try_send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    payload: &Payload,
    headers: &[(&str, &[u8])],
) -> Result<Response, String> {
    let mut req = app
        .client
        .request(method.clone(), format!("{}{path}", app.address));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    for (name, value) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(value)
            .map_err(|e| format!("bad test header {name}: {e}"))?;
        req = req.header(*name, value);
    }
    req = match payload {
        Payload::Empty => req,
        Payload::Json(v) => req.json(v),
        Payload::Raw(bytes) => req
            .header("content-type", "application/json")
            .body(bytes.clone()),
    };
    req.send()
        .await
        .map_err(|e| format!("{method} {path}: the request failed: {e:?}"))
}

/// Sends a request without extra headers.
pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    payload: &Payload,
) -> Result<Response, String> {
    try_send(app, method, path, key, payload, &[]).await
}

/// The answer a refused request must get.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// 400 `malformed_json`.
    Malformed,
    /// 413 `payload_too_large`.
    TooLarge,
    /// 422 `validation_failed` whose `errors` name at least these fields.
    Invalid(&'static [&'static str]),
    /// 422 `validation_failed` whose `errors` name exactly these fields.
    InvalidExactly(&'static [&'static str]),
    /// Any other problem: status and code.
    Problem(u16, &'static str),
}

impl Expect {
    fn status_and_code(self) -> (u16, &'static str) {
        match self {
            Expect::Malformed => (400, "malformed_json"),
            Expect::TooLarge => (413, "payload_too_large"),
            Expect::Invalid(_) | Expect::InvalidExactly(_) => (422, "validation_failed"),
            Expect::Problem(status, code) => (status, code),
        }
    }
}

/// Checks that `res` is the problem+json refusal `expect` describes;
/// returns its body.
pub async fn check_refusal(res: Response, expect: Expect) -> Result<Value, String> {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = res
        .text()
        .await
        .map_err(|e| format!("reading the body: {e}"))?;
    let shown: String = text.chars().take(600).collect();
    ensure!(
        (400..500).contains(&status),
        "expected a 4xx, got {status}: {shown}"
    );
    let (want_status, want_code) = expect.status_and_code();
    ensure!(
        status == want_status,
        "expected status {want_status}, got {status}: {shown}"
    );
    ensure!(
        content_type.as_deref() == Some("application/problem+json"),
        "expected application/problem+json, got {content_type:?}: {shown}"
    );
    let problem: Value =
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {shown}"))?;
    ensure!(
        problem["code"] == want_code,
        "expected code {want_code}: {problem}"
    );
    ensure!(
        problem["status"] == want_status,
        "status member is not {want_status}: {problem}"
    );
    ensure!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "type is not /problems/…: {problem}"
    );
    ensure!(
        problem["title"].is_string() && problem["detail"].is_string(),
        "title and detail must be strings: {problem}"
    );
    if let Expect::Invalid(fields) | Expect::InvalidExactly(fields) = expect {
        let listed = error_fields(&problem)?;
        for field in fields {
            ensure!(
                listed.iter().any(|l| l == field),
                "errors should name {field:?}; they name {listed:?}: {problem}"
            );
        }
        if let Expect::InvalidExactly(_) = expect {
            let mut want: Vec<&str> = fields.to_vec();
            let mut got: Vec<&str> = listed.iter().map(String::as_str).collect();
            want.sort_unstable();
            got.sort_unstable();
            ensure!(
                want == got,
                "errors should name exactly {want:?}; they name {got:?}: {problem}"
            );
        }
    }
    Ok(problem)
}

/// The `field` of every entry of a validation problem's `errors`, each of
/// which must also carry a `message`.
pub(crate) fn error_fields(problem: &Value) -> Result<Vec<String>, String> {
    let errors = problem["errors"]
        .as_array()
        .ok_or_else(|| format!("no errors array: {problem}"))?;
    ensure!(!errors.is_empty(), "errors is empty: {problem}");
    errors
        .iter()
        .map(|e| {
            let field = e["field"].as_str();
            let message = e["message"].as_str().filter(|m| !m.is_empty());
            match (field, message) {
                (Some(f), Some(_)) => Ok(f.to_owned()),
                _ => Err(format!("an error lacks field or message: {e}")),
            }
        })
        .collect()
}

/// Everything a request could change: the API view of some SKUs, every
/// Redis key of the app with its content, and the Postgres record.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    views: Vec<(String, u16, Value)>,
    redis: BTreeMap<String, String>,
    postgres: Vec<String>,
}

impl Snapshot {
    /// Takes a snapshot, viewing `skus` through the API.
    pub async fn take(app: &TestApp, skus: &[&str]) -> Snapshot {
        let mut views = Vec::new();
        for sku in skus {
            let res = app.get_sku(sku).await;
            let status = res.status().as_u16();
            let view = res.json().await.unwrap_or(Value::Null);
            views.push((sku.to_string(), status, view));
        }
        Snapshot {
            views,
            redis: redis_content(app).await,
            postgres: postgres_content(app).await,
        }
    }

    /// `Ok` if nothing changed since `self` was taken.
    pub async fn unchanged(&self, app: &TestApp) -> Result<(), String> {
        let skus: Vec<&str> = self.views.iter().map(|(s, _, _)| s.as_str()).collect();
        let now = Snapshot::take(app, &skus).await;
        self.same_as(&now)
    }

    /// As `unchanged`, but for the events streams (a reconcile's dry run
    /// tells the drift it found there).
    pub async fn unchanged_but_events(&self, app: &TestApp) -> Result<(), String> {
        let skus: Vec<&str> = self.views.iter().map(|(s, _, _)| s.as_str()).collect();
        let now = Snapshot::take(app, &skus).await;
        let no_events = |s: &Snapshot| Snapshot {
            views: s.views.clone(),
            redis: s
                .redis
                .iter()
                .filter(|(k, _)| !k.ends_with(":events"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            postgres: s.postgres.clone(),
        };
        no_events(self).same_as(&no_events(&now))
    }

    fn same_as(&self, now: &Snapshot) -> Result<(), String> {
        ensure!(
            now.views == self.views,
            "the SKUs changed: before {:?}, after {:?}",
            self.views,
            now.views
        );
        ensure!(
            now.redis == self.redis,
            "Redis changed: before {:?}, after {:?}",
            self.redis,
            now.redis
        );
        ensure!(
            now.postgres == self.postgres,
            "Postgres changed: before {:?}, after {:?}",
            self.postgres,
            now.postgres
        );
        Ok(())
    }
}

/// Every key under the app's prefix (but leases) with a rendering of its content.
async fn redis_content(app: &TestApp) -> BTreeMap<String, String> {
    let mut conn = app.redis().await;
    let pattern = format!("{}:*", app.settings.redis.key_prefix);
    let keys = app.redis_keys(&pattern).await;
    let mut content = BTreeMap::new();
    // Leases (e.g. the start-up rebuild's) and a reconciliation's watch on
    // the live holds (with the holds it noted) expire on their own schedule
    // and are no part of the stock a request could change.
    let is_lease = |key: &str| {
        key.ends_with("lock")
            || key.ends_with("lease")
            || key.ends_with(":watches")
            || key.contains(":touched:")
    };
    for key in keys.into_iter().filter(|k| !is_lease(k)) {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let rendered = match kind.as_str() {
            "hash" => {
                let map: BTreeMap<String, String> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("{map:?}")
            }
            "stream" => {
                let len: i64 = redis::cmd("XLEN")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("stream of {len}")
            }
            "zset" => {
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("{members:?}")
            }
            "string" => {
                let value: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                format!("{value:?}")
            }
            other => other.to_owned(),
        };
        content.insert(key, rendered);
    }
    content
}

/// The SKUs as persisted and the size of every append-only table.
async fn postgres_content(app: &TestApp) -> Vec<String> {
    let skus: Vec<(String,)> = sqlx::query_as(
        "SELECT concat_ws(' ', sku, t.on_hand, backorder_limit, \
                coalesce(per_customer_limit::text, '-'), coalesce(sale_starts_at::text, '-')) \
         FROM skus JOIN sku_stock t USING (sku) ORDER BY sku",
    )
    .fetch_all(app.db())
    .await
    .unwrap();
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM stock_movements), (SELECT count(*) FROM orders), \
                (SELECT count(*) FROM order_lines), (SELECT count(*) FROM returns)",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    let mut content: Vec<String> = skus.into_iter().map(|(s,)| s).collect();
    content.push(format!(
        "movements {} orders {} order_lines {} returns {}",
        counts.0, counts.1, counts.2, counts.3
    ));
    content
}

/// Collects the failures of a table so that one run reports all of them.
#[derive(Default)]
pub struct Failures {
    cases: usize,
    failed: Vec<String>,
}

impl Failures {
    /// Records the outcome of case `name`.
    pub fn record(&mut self, name: &str, outcome: Result<(), String>) {
        self.cases += 1;
        if let Err(why) = outcome {
            self.failed.push(format!("case {name:?}: {why}"));
        }
    }

    /// Panics listing every failed case.
    #[track_caller]
    pub fn assert_none(self) {
        assert!(
            self.failed.is_empty(),
            "{} of {} cases failed:\n{}",
            self.failed.len(),
            self.cases,
            self.failed.join("\n")
        );
    }
}

/// Sends one case, checks its refusal and that nothing changed.
async fn refused_without_change(
    app: &TestApp,
    before: &Snapshot,
    res: Result<Response, String>,
    expect: Expect,
) -> Result<(), String> {
    check_refusal(res?, expect).await?;
    before.unchanged(app).await
}

/// A fresh app with SKUs A (10 units) and B (5 units).
async fn app_with_stock() -> TestApp {
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    app
}

#[tokio::test]
async fn malformed_reservations_are_refused_listing_every_problem_and_hold_nothing() {
    // Arrange
    let app = app_with_stock().await;
    let line = |v: Value| body(json!({ "lines": [v] }));
    let qty = |q: Value| line(json!({ "sku": "A", "qty": q }));
    let sku = |s: Value| line(json!({ "sku": s, "qty": 1 }));
    let with = |field: &str, v: Value| {
        let mut b = json!({ "lines": [ { "sku": "A", "qty": 1 } ] });
        b[field] = v;
        body(b)
    };
    use Expect::*;
    let cases: Vec<(&str, Payload, Expect)> = vec![
        ("not JSON", raw("lines: A"), Malformed),
        (
            "truncated JSON",
            raw(r#"{"lines": [{"sku": "A""#),
            Malformed,
        ),
        ("trailing garbage", raw(r#"{"lines": []} x"#), Malformed),
        ("empty body", Payload::Empty, Malformed),
        ("whitespace body", raw("  \n "), Malformed),
        (
            "invalid UTF-8",
            raw(&b"{\"lines\":[{\"sku\":\"\xff\",\"qty\":1}]}"[..]),
            Malformed,
        ),
        (
            "deeply nested JSON",
            raw(format!(
                "{{\"lines\":{}{}}}",
                "[".repeat(10_000),
                "]".repeat(10_000)
            )),
            Malformed,
        ),
        (
            "JSON array",
            body(json!([{ "sku": "A", "qty": 1 }])),
            Invalid(&[""]),
        ),
        ("JSON string", body(json!("A")), Invalid(&[""])),
        ("JSON number", body(json!(5)), Invalid(&[""])),
        ("JSON null", raw("null"), Invalid(&[""])),
        ("lines missing", body(json!({})), InvalidExactly(&["lines"])),
        (
            "lines null",
            body(json!({ "lines": null })),
            Invalid(&["lines"]),
        ),
        (
            "lines an object",
            body(json!({ "lines": { "sku": "A", "qty": 1 } })),
            InvalidExactly(&["lines"]),
        ),
        (
            "lines a string",
            body(json!({ "lines": "A" })),
            InvalidExactly(&["lines"]),
        ),
        (
            "lines empty",
            body(json!({ "lines": [] })),
            InvalidExactly(&["lines"]),
        ),
        (
            "line a number",
            line(json!(5)),
            InvalidExactly(&["lines[0]"]),
        ),
        (
            "line an array",
            line(json!(["A", 1])),
            InvalidExactly(&["lines[0]"]),
        ),
        (
            "line null",
            line(Value::Null),
            InvalidExactly(&["lines[0]"]),
        ),
        (
            "sku missing",
            line(json!({ "qty": 1 })),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku a number",
            sku(json!(7)),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku null",
            sku(Value::Null),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku empty",
            sku(json!("")),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku of 65 characters",
            sku(json!("a".repeat(65))),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku with a space",
            sku(json!("A B")),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku with a slash",
            sku(json!("A/B")),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku non-ASCII",
            sku(json!("Ä")),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "sku with a newline",
            sku(json!("A\n")),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "qty missing",
            line(json!({ "sku": "A" })),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty a string",
            qty(json!("2")),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty a boolean",
            qty(json!(true)),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty 1.5",
            qty(json!(1.5)),
            InvalidExactly(&["lines[0].qty"]),
        ),
        ("qty 0", qty(json!(0)), InvalidExactly(&["lines[0].qty"])),
        ("qty -1", qty(json!(-1)), InvalidExactly(&["lines[0].qty"])),
        (
            "qty 1000001",
            qty(json!(1_000_001)),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty 1e20",
            raw(r#"{"lines":[{"sku":"A","qty":1e20}]}"#),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty beyond i64",
            raw(r#"{"lines":[{"sku":"A","qty":99999999999999999999999}]}"#),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "unknown field in a line",
            line(json!({ "sku": "A", "qty": 1, "price": 3 })),
            InvalidExactly(&["lines[0].price"]),
        ),
        (
            "second line bad, first fine",
            body(json!({ "lines": [ { "sku": "A", "qty": 1 }, { "sku": "B", "qty": 0 } ] })),
            InvalidExactly(&["lines[1].qty"]),
        ),
        (
            "501 lines",
            body(json!({ "lines": many_lines(501) })),
            InvalidExactly(&["lines"]),
        ),
        (
            "ttl_seconds 0",
            with("ttl_seconds", json!(0)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds -5",
            with("ttl_seconds", json!(-5)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds a string",
            with("ttl_seconds", json!("900")),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds 1.5",
            with("ttl_seconds", json!(1.5)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds over the storefront ceiling",
            with("ttl_seconds", json!(3601)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "customer_id empty",
            with("customer_id", json!("")),
            InvalidExactly(&["customer_id"]),
        ),
        (
            "customer_id of 129 characters",
            with("customer_id", json!("c".repeat(129))),
            InvalidExactly(&["customer_id"]),
        ),
        (
            "customer_id with a control character",
            with("customer_id", json!("c-\u{1}23")),
            InvalidExactly(&["customer_id"]),
        ),
        (
            "customer_id a number",
            with("customer_id", json!(123)),
            InvalidExactly(&["customer_id"]),
        ),
        (
            "channel empty",
            with("channel", json!("")),
            InvalidExactly(&["channel"]),
        ),
        (
            "channel a number",
            with("channel", json!(1)),
            InvalidExactly(&["channel"]),
        ),
        (
            "channel of 129 characters",
            with("channel", json!("w".repeat(129))),
            InvalidExactly(&["channel"]),
        ),
        (
            "channel with a tab",
            with("channel", json!("w\teb")),
            InvalidExactly(&["channel"]),
        ),
        (
            "allow_partial \"yes\"",
            with("allow_partial", json!("yes")),
            InvalidExactly(&["allow_partial"]),
        ),
        (
            "allow_partial 1",
            with("allow_partial", json!(1)),
            InvalidExactly(&["allow_partial"]),
        ),
        (
            "unknown top-level field",
            with("coupon", json!("X")),
            InvalidExactly(&["coupon"]),
        ),
        ("body over 1 MiB", over_one_mib(), TooLarge),
        (
            "non-JSON body over 1 MiB",
            raw(vec![b'x'; MIB + 1]),
            TooLarge,
        ),
        (
            "several problems at once",
            body(json!({
                "lines": [ { "sku": "bad sku", "qty": 1 }, { "sku": "B", "qty": 0 }, { "qty": "2" } ],
                "ttl_seconds": 4000, "customer_id": "", "channel": 5,
                "allow_partial": "yes", "coupon": "X"
            })),
            InvalidExactly(&[
                "lines[0].sku",
                "lines[1].qty",
                "lines[2].sku",
                "lines[2].qty",
                "ttl_seconds",
                "customer_id",
                "channel",
                "allow_partial",
                "coupon",
            ]),
        ),
    ];
    let before = Snapshot::take(&app, &["A", "B"]).await;
    assert_eq!(app.counts("A").await, (10, 0, 10));
    assert_eq!(app.counts("B").await, (5, 0, 5));
    let mut failures = Failures::default();

    // Act / Assert
    for (name, payload, expect) in cases {
        let res = send(
            &app,
            Method::POST,
            "/v1/reservations",
            Some(STOREFRONT),
            &payload,
        )
        .await;
        failures.record(
            name,
            refused_without_change(&app, &before, res, expect).await,
        );
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_body_of_exactly_1_mib_is_read_and_one_byte_more_is_413() {
    // Arrange: a reservation padded with an unknown field to exactly 1 MiB.
    let app = app_with_stock().await;
    let padded = |size: usize| {
        let head = r#"{"lines":[{"sku":"A","qty":1}],"pad":""#;
        let tail = r#""}"#;
        let mut text = String::from(head);
        text.push_str(&"x".repeat(size - head.len() - tail.len()));
        text.push_str(tail);
        assert_eq!(text.len(), size);
        raw(text)
    };
    let before = Snapshot::take(&app, &["A", "B"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, size, expect) in [
        ("exactly 1 MiB", MIB, Expect::InvalidExactly(&["pad"])),
        ("1 MiB and a byte", MIB + 1, Expect::TooLarge),
    ] {
        let res = send(
            &app,
            Method::POST,
            "/v1/reservations",
            Some(STOREFRONT),
            &padded(size),
        )
        .await;
        failures.record(
            name,
            refused_without_change(&app, &before, res, expect).await,
        );
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_chunked_body_over_1_mib_without_content_length_is_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Arrange: no Content-Length, so the limit must be enforced while reading.
    let app = app_with_stock().await;
    let before = Snapshot::take(&app, &["A", "B"]).await;
    let host = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /v1/reservations HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {STOREFRONT}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );

    // Act: 1 MiB + 64 KiB of padding in 64 KiB chunks; the server may stop
    // reading once the limit is passed, so write errors are expected.
    let _ = stream.write_all(head.as_bytes()).await;
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..17 {
        let framed = [
            format!("{:x}\r\n", chunk.len()).as_bytes(),
            &chunk[..],
            b"\r\n",
        ]
        .concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await;

    // Assert
    let answer = String::from_utf8_lossy(&answer);
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(
        status_line.starts_with("HTTP/1.1 413"),
        "expected 413, got: {}",
        answer.chars().take(600).collect::<String>()
    );
    assert!(answer.contains("payload_too_large"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn a_reservation_of_exactly_500_lines_is_within_the_limit() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("BULK", 500).await;
    let lines: Vec<Value> = (0..500)
        .map(|_| json!({ "sku": "BULK", "qty": 1 }))
        .collect();

    // Act
    let res = app.reserve(json!({ "lines": lines })).await;

    // Assert: lines naming the same SKU are summed.
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let reservation: Value = res.json().await.unwrap();
    assert_eq!(
        reservation["lines"],
        json!([ { "sku": "BULK", "qty": 500 } ])
    );
    assert_eq!(app.counts("BULK").await, (500, 500, 0));
}

#[tokio::test]
async fn malformed_reservation_changes_are_refused_and_change_nothing() {
    // Arrange
    let app = app_with_stock().await;
    let id = app.hold(&[("A", 2)]).await;
    let path = format!("/v1/reservations/{id}");
    let qty = |q: Value| body(json!({ "lines": [ { "sku": "A", "qty": q } ] }));
    let ttl = |t: Value| body(json!({ "ttl_seconds": t }));
    use Expect::*;
    let cases: Vec<(&str, Payload, Expect)> = vec![
        ("empty object", body(json!({})), InvalidExactly(&[""])),
        (
            "only nulls",
            body(json!({ "lines": null, "ttl_seconds": null })),
            Invalid(&[""]),
        ),
        ("qty -1", qty(json!(-1)), InvalidExactly(&["lines[0].qty"])),
        (
            "qty 1000001",
            qty(json!(1_000_001)),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty a string",
            qty(json!("1")),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty 0.5",
            qty(json!(0.5)),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "qty missing",
            body(json!({ "lines": [ { "sku": "A" } ] })),
            InvalidExactly(&["lines[0].qty"]),
        ),
        (
            "sku bad",
            body(json!({ "lines": [ { "sku": "A B", "qty": 1 } ] })),
            InvalidExactly(&["lines[0].sku"]),
        ),
        (
            "lines an object",
            body(json!({ "lines": { "sku": "A", "qty": 1 } })),
            InvalidExactly(&["lines"]),
        ),
        (
            "line a string",
            body(json!({ "lines": ["A"] })),
            InvalidExactly(&["lines[0]"]),
        ),
        (
            "501 lines",
            body(json!({ "lines": many_lines(501) })),
            InvalidExactly(&["lines"]),
        ),
        (
            "unknown field",
            body(json!({ "ttl_seconds": 60, "note": "x" })),
            InvalidExactly(&["note"]),
        ),
        (
            "ttl_seconds 0",
            ttl(json!(0)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds -1",
            ttl(json!(-1)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds a string",
            ttl(json!("900")),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "ttl_seconds over the storefront ceiling",
            ttl(json!(3601)),
            InvalidExactly(&["ttl_seconds"]),
        ),
        (
            "several problems at once",
            body(json!({ "lines": [ { "sku": "", "qty": -1 } ], "ttl_seconds": 0, "x": 1 })),
            InvalidExactly(&["lines[0].sku", "lines[0].qty", "ttl_seconds", "x"]),
        ),
        ("JSON array", body(json!([])), Invalid(&[""])),
        ("not JSON", raw("ttl_seconds=60"), Malformed),
        ("empty body", Payload::Empty, Malformed),
        (
            "body over 1 MiB",
            body(json!({ "ttl_seconds": 60, "pad": "x".repeat(MIB) })),
            TooLarge,
        ),
    ];
    let before = Snapshot::take(&app, &["A", "B"]).await;
    assert_eq!(app.counts("A").await, (10, 2, 8));
    let mut failures = Failures::default();

    // Act / Assert
    for (name, payload, expect) in cases {
        let res = send(&app, Method::PATCH, &path, Some(STOREFRONT), &payload).await;
        failures.record(
            name,
            refused_without_change(&app, &before, res, expect).await,
        );
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_reservation_change_may_set_qty_0_to_remove_a_line() {
    // Arrange
    let app = app_with_stock().await;
    let id = app.hold(&[("A", 2), ("B", 1)]).await;

    // Act
    let res = app
        .patch_reservation(&id, json!({ "lines": [ { "sku": "A", "qty": 0 } ] }))
        .await;

    // Assert
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let reservation: Value = res.json().await.unwrap();
    assert_eq!(reservation["lines"], json!([ { "sku": "B", "qty": 1 } ]));
    assert_eq!(app.counts("A").await, (10, 0, 10));
    assert_eq!(app.counts("B").await, (5, 1, 4));
}

#[tokio::test]
async fn malformed_commits_are_refused_and_sell_nothing() {
    // Arrange
    let app = app_with_stock().await;
    let id = app.hold(&[("A", 2)]).await;
    let path = format!("/v1/reservations/{id}/commit");
    use Expect::*;
    let cases: Vec<(&str, Payload, Expect)> = vec![
        (
            "order_id a number",
            body(json!({ "order_id": 5521 })),
            InvalidExactly(&["order_id"]),
        ),
        (
            "order_id empty",
            body(json!({ "order_id": "" })),
            InvalidExactly(&["order_id"]),
        ),
        (
            "order_id of 129 characters",
            body(json!({ "order_id": "o".repeat(129) })),
            InvalidExactly(&["order_id"]),
        ),
        (
            "order_id with a control character",
            body(json!({ "order_id": "ord\u{7}1" })),
            InvalidExactly(&["order_id"]),
        ),
        (
            "order_id an object",
            body(json!({ "order_id": { "id": "x" } })),
            InvalidExactly(&["order_id"]),
        ),
        (
            "payment_ref empty",
            body(json!({ "payment_ref": "" })),
            InvalidExactly(&["payment_ref"]),
        ),
        (
            "payment_ref a number",
            body(json!({ "payment_ref": 77 })),
            InvalidExactly(&["payment_ref"]),
        ),
        (
            "payment_ref of 129 characters",
            body(json!({ "payment_ref": "p".repeat(129) })),
            InvalidExactly(&["payment_ref"]),
        ),
        (
            "unknown field",
            body(json!({ "order_id": "ord-1", "amount": 10 })),
            InvalidExactly(&["amount"]),
        ),
        (
            "several problems at once",
            body(json!({ "order_id": "", "payment_ref": 1, "amount": 10 })),
            InvalidExactly(&["order_id", "payment_ref", "amount"]),
        ),
        ("JSON array", body(json!(["ord-1"])), Invalid(&[""])),
        ("JSON string", body(json!("ord-1")), Invalid(&[""])),
        ("not JSON", raw("order_id=ord-1"), Malformed),
        (
            "body over 1 MiB",
            body(json!({ "order_id": "ord-1", "pad": "x".repeat(MIB) })),
            TooLarge,
        ),
    ];
    let before = Snapshot::take(&app, &["A", "B"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, payload, expect) in cases {
        let res = send(&app, Method::POST, &path, Some(STOREFRONT), &payload).await;
        failures.record(
            name,
            refused_without_change(&app, &before, res, expect).await,
        );
    }
    failures.assert_none();
    // The reservation is intact: still held, and a valid commit goes through.
    let reservation: Value = app.get_reservation(&id).await.json().await.unwrap();
    assert_eq!(reservation["status"], "held");
    let res = app.commit(&id, json!({ "order_id": "ord-1" })).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn malformed_sku_set_ups_are_refused_and_change_nothing() {
    // Arrange
    let app = app_with_stock().await;
    use Expect::*;
    let long = "a".repeat(65);
    let cases: Vec<(&str, &str, Payload, Expect)> = vec![
        (
            "create without on_hand",
            "NEW",
            body(json!({})),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "create with only settings",
            "NEW",
            body(json!({ "backorder_limit": 2 })),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "create with on_hand null",
            "NEW",
            body(json!({ "on_hand": null })),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "create with an empty body",
            "NEW",
            Payload::Empty,
            Malformed,
        ),
        (
            "create with a bad on_hand",
            "NEW",
            body(json!({ "on_hand": -1 })),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "on_hand -1",
            "A",
            body(json!({ "on_hand": -1 })),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "on_hand a string",
            "A",
            body(json!({ "on_hand": "5" })),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "on_hand 1.5",
            "A",
            body(json!({ "on_hand": 1.5 })),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "on_hand 1e20",
            "A",
            raw(r#"{"on_hand":1e20}"#),
            InvalidExactly(&["on_hand"]),
        ),
        (
            "backorder_limit -1",
            "A",
            body(json!({ "backorder_limit": -1 })),
            InvalidExactly(&["backorder_limit"]),
        ),
        (
            "backorder_limit a string",
            "A",
            body(json!({ "backorder_limit": "0" })),
            InvalidExactly(&["backorder_limit"]),
        ),
        (
            "per_customer_limit 0",
            "A",
            body(json!({ "per_customer_limit": 0 })),
            InvalidExactly(&["per_customer_limit"]),
        ),
        (
            "per_customer_limit a string",
            "A",
            body(json!({ "per_customer_limit": "x" })),
            InvalidExactly(&["per_customer_limit"]),
        ),
        (
            "sale_starts_at \"tomorrow\"",
            "A",
            body(json!({ "sale_starts_at": "tomorrow" })),
            InvalidExactly(&["sale_starts_at"]),
        ),
        (
            "sale_starts_at a number",
            "A",
            body(json!({ "sale_starts_at": 123 })),
            InvalidExactly(&["sale_starts_at"]),
        ),
        (
            "sale_starts_at a date only",
            "A",
            body(json!({ "sale_starts_at": "2026-12-12" })),
            InvalidExactly(&["sale_starts_at"]),
        ),
        (
            "unknown field",
            "A",
            body(json!({ "on_hand": 3, "colour": "red" })),
            InvalidExactly(&["colour"]),
        ),
        (
            "SKU with a space in the path",
            "bad%20sku",
            body(json!({ "on_hand": 1 })),
            InvalidExactly(&["sku"]),
        ),
        (
            "SKU of 65 characters in the path",
            &long,
            body(json!({ "on_hand": 1 })),
            InvalidExactly(&["sku"]),
        ),
        (
            "non-ASCII SKU in the path",
            "%C3%84",
            body(json!({ "on_hand": 1 })),
            InvalidExactly(&["sku"]),
        ),
        (
            "SKU with an encoded slash in the path",
            "a%2Fb",
            body(json!({ "on_hand": 1 })),
            InvalidExactly(&["sku"]),
        ),
        (
            "bad SKU and bad body at once",
            "bad%20sku",
            body(json!({ "on_hand": -1, "per_customer_limit": 0, "colour": "red" })),
            InvalidExactly(&["sku", "on_hand", "per_customer_limit", "colour"]),
        ),
        (
            "JSON array",
            "A",
            body(json!([{ "on_hand": 1 }])),
            Invalid(&[""]),
        ),
        ("not JSON", "A", raw("on_hand=5"), Malformed),
        (
            "body over 1 MiB",
            "A",
            body(json!({ "on_hand": 5, "pad": "x".repeat(MIB) })),
            TooLarge,
        ),
    ];
    let before = Snapshot::take(&app, &["A", "B", "NEW"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, sku, payload, expect) in cases {
        let path = format!("/v1/skus/{sku}");
        let res = send(&app, Method::PUT, &path, Some(ADMIN), &payload).await;
        failures.record(
            name,
            refused_without_change(&app, &before, res, expect).await,
        );
    }
    failures.assert_none();
    assert_eq!(app.get_sku("NEW").await.status(), 404);
}

#[tokio::test]
async fn malformed_availability_queries_are_refused() {
    // Arrange
    let app = app_with_stock().await;
    let many: Vec<String> = (0..501).map(|i| format!("sku=S-{i}")).collect();
    let many = many.join("&");
    let long = format!("sku={}", "a".repeat(65));
    use Expect::*;
    let cases: Vec<(&str, &str, Expect)> = vec![
        ("no query", "", InvalidExactly(&["sku"])),
        ("no sku parameter", "?", InvalidExactly(&["sku"])),
        ("empty sku", "?sku=", Invalid(&["sku[0]"])),
        ("501 SKUs", &many, InvalidExactly(&["sku"])),
        (
            "SKU with a space",
            "?sku=bad%20sku",
            InvalidExactly(&["sku[0]"]),
        ),
        (
            "SKU with a slash",
            "?sku=a%2Fb",
            InvalidExactly(&["sku[0]"]),
        ),
        ("SKU of 65 characters", &long, InvalidExactly(&["sku[0]"])),
        (
            "second SKU bad",
            "?sku=A&sku=%C3%84",
            InvalidExactly(&["sku[1]"]),
        ),
        (
            "unknown parameter",
            "?sku=A&colour=red",
            InvalidExactly(&["colour"]),
        ),
        (
            "unknown parameter before a bad SKU",
            "?colour=red&sku=A&sku=bad%20sku",
            InvalidExactly(&["colour", "sku[1]"]),
        ),
        (
            "only an unknown parameter",
            "?SKU=A",
            InvalidExactly(&["SKU", "sku"]),
        ),
    ];
    let before = Snapshot::take(&app, &["A", "B"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, query, expect) in cases {
        let query = if query.starts_with("sku=") {
            format!("?{query}")
        } else {
            query.to_owned()
        };
        let path = format!("/v1/availability{query}");
        let res = send(&app, Method::GET, &path, Some(STOREFRONT), &Payload::Empty).await;
        failures.record(
            name,
            refused_without_change(&app, &before, res, expect).await,
        );
    }
    failures.assert_none();
}

#[tokio::test]
async fn availability_of_exactly_500_skus_is_within_the_limit() {
    // Arrange
    let app = app_with_stock().await;
    let skus: Vec<String> = (0..500).map(|i| format!("S-{i}")).collect();
    let skus: Vec<&str> = skus.iter().map(String::as_str).collect();

    // Act
    let res = app.availability(&skus).await;

    // Assert
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let view: Value = res.json().await.unwrap();
    assert_eq!(view["items"].as_array().unwrap().len(), 500);
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused_with_422_on_every_mutation() {
    // Arrange
    let app = app_with_stock().await;
    let id = app.hold(&[("A", 2)]).await;
    let reserve = body(json!({ "lines": [ { "sku": "B", "qty": 1 } ] }));
    let patch = body(json!({ "lines": [ { "sku": "A", "qty": 3 } ] }));
    let commit = body(json!({ "order_id": "ord-1" }));
    let held = format!("/v1/reservations/{id}");
    let commit_path = format!("{held}/commit");
    let long = "k".repeat(256);
    let requests: Vec<(&str, Method, &str, &Payload)> = vec![
        ("reserve", Method::POST, "/v1/reservations", &reserve),
        ("patch", Method::PATCH, &held, &patch),
        ("release", Method::DELETE, &held, &Payload::Empty),
        ("commit", Method::POST, &commit_path, &commit),
    ];
    let keys: Vec<(&str, &[u8])> = vec![
        ("256 characters", long.as_bytes()),
        ("empty", b""),
        ("non-ASCII", "schlüssel".as_bytes()),
    ];
    let before = Snapshot::take(&app, &["A", "B"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (endpoint, method, path, payload) in &requests {
        for (key_name, key) in &keys {
            let headers = [("Idempotency-Key", *key)];
            let res = try_send(
                &app,
                method.clone(),
                path,
                Some(STOREFRONT),
                payload,
                &headers,
            )
            .await;
            let expect = Expect::InvalidExactly(&["Idempotency-Key"]);
            failures.record(
                &format!("{endpoint} with a key {key_name}"),
                refused_without_change(&app, &before, res, expect).await,
            );
        }
    }
    failures.assert_none();
    let reservation: Value = app.get_reservation(&id).await.json().await.unwrap();
    assert_eq!(reservation["status"], "held");
}

#[tokio::test]
async fn an_idempotency_key_of_255_characters_is_accepted() {
    // Arrange
    let app = app_with_stock().await;
    let key = "k".repeat(255);
    let payload = body(json!({ "lines": [ { "sku": "A", "qty": 1 } ] }));
    let headers = [("Idempotency-Key", key.as_bytes())];

    // Act
    let res = try_send(
        &app,
        Method::POST,
        "/v1/reservations",
        Some(STOREFRONT),
        &payload,
        &headers,
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    assert_eq!(app.counts("A").await, (10, 1, 9));
}

#[tokio::test]
async fn the_line_limit_is_configurable() {
    // Arrange
    let app = spawn_app_with(|s| s.limits.max_lines = 2).await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 10).await;
    app.create_sku("C", 10).await;
    let lines = |skus: &[&str]| {
        let lines: Vec<Value> = skus.iter().map(|s| json!({ "sku": s, "qty": 1 })).collect();
        body(json!({ "lines": lines }))
    };
    let before = Snapshot::take(&app, &["A", "B", "C"]).await;

    // Act
    let three = send(
        &app,
        Method::POST,
        "/v1/reservations",
        Some(STOREFRONT),
        &lines(&["A", "B", "C"]),
    )
    .await;

    // Assert
    refused_without_change(&app, &before, three, Expect::InvalidExactly(&["lines"]))
        .await
        .unwrap();
    let two = app
        .reserve(json!({ "lines": [ { "sku": "A", "qty": 1 }, { "sku": "B", "qty": 1 } ] }))
        .await;
    assert_eq!(two.status(), 201, "{}", two.text().await.unwrap());
}

#[tokio::test]
async fn a_body_over_1_mib_with_an_idempotency_key_is_413_and_does_not_use_up_the_key() {
    // Arrange
    let app = app_with_stock().await;
    let headers = [("Idempotency-Key", &b"big-1"[..])];
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let res = try_send(
        &app,
        Method::POST,
        "/v1/reservations",
        Some(STOREFRONT),
        &over_one_mib(),
        &headers,
    )
    .await;

    // Assert
    refused_without_change(&app, &before, res, Expect::TooLarge)
        .await
        .unwrap();
    let valid = body(json!({ "lines": [ { "sku": "A", "qty": 1 } ] }));
    let res = try_send(
        &app,
        Method::POST,
        "/v1/reservations",
        Some(STOREFRONT),
        &valid,
        &headers,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}
