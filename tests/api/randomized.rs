//! A seeded randomized run over the whole API: many concurrent clients
//! reserve (whole and partial baskets), patch, commit, release, let short
//! holds expire, commit right at expiry, adjust, return and reconcile, and
//! keep a model of what they were told. Every couple of seconds a checker
//! pauses them and checks DESIGN.md's invariants 1–6 for every SKU against
//! Redis (read directly), Postgres (once the outbox is drained) and the model,
//! and the pools' invariants of SKUs with channel allocations and safety
//! stock (each pool within its share, what holds took from each adding up,
//! safety stock never held, the shares in the ledger).
//!
//! The seed is printed at the start and named in every failure; replay with
//! `STOCKHOLD_TEST_SEED=<seed>` (each client's choices follow from the seed
//! and the answers it gets; the interleaving of clients is up to the
//! scheduler). `STOCKHOLD_SOAK_SECONDS=600` runs a long soak instead of the
//! default 10 s.

use crate::helpers::*;
use chrono::DateTime;
use futures_util::future::try_join_all;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::RwLock;
use tokio::time::Instant;

/// Concurrent clients.
const CLIENTS: usize = 64;
/// Customers the clients buy for; fewer than clients, so per-customer limits
/// are contended across clients.
const CUSTOMERS: usize = 24;
/// SKUs in the catalogue (plus one whose sale has not started).
const SKUS: usize = 20;
/// A SKU whose sale starts in 2099: holding it is always refused.
const LATER: &str = "LATER";
const DEFAULT_RUN: Duration = Duration::from_secs(10);
const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Operations per client at most, whatever the run length.
const MAX_OPS_PER_CLIENT: u64 = 1_000_000;
/// API.md: a hold's units are back no later than 2 s after `expires_at`.
const EXPIRY_PROMISE_MS: i64 = 2_000;
/// How long a checkpoint waits for the outbox drain.
const DRAIN_PATIENCE: Duration = Duration::from_secs(20);

type Lines = BTreeMap<String, i64>;

/// Panics naming the seed, so that the run can be replayed.
macro_rules! check {
    ($run:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            panic!(
                "[seed {0}; replay with STOCKHOLD_TEST_SEED={0}] {1}",
                $run.seed,
                format_args!($($arg)+)
            );
        }
    };
}

#[derive(Debug, Clone)]
struct SkuSpec {
    sku: String,
    initial: i64,
    backorder: i64,
    limit: Option<i64>,
    /// Units no channel may hold.
    safety: i64,
    /// Channels' allocations as set up (the clients' channels are web and
    /// phone).
    allocations: Vec<(String, i64)>,
}

/// What a client was last told about a hold.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    Held,
    Committed(String),
    Released,
    Expired,
}

#[derive(Debug, Clone)]
struct HoldModel {
    customer: Option<String>,
    lines: Lines,
    told: Told,
    expires_ms: i64,
}

#[derive(Debug, Clone)]
struct OrderModel {
    reservation: String,
    customer: Option<String>,
    lines: Lines,
    returned: Lines,
    persisted: bool,
}

/// Everything clients were told that changes stock.
#[derive(Debug, Clone, Default)]
struct Model {
    /// Acknowledged adjustments, per SKU.
    adjusted: Lines,
    /// Acknowledged restocked returns, per SKU.
    restocked: Lines,
    holds: HashMap<String, HoldModel>,
    /// Acknowledged commits (201 or 202).
    orders: BTreeMap<String, OrderModel>,
    /// Orders answered 201 that still have units to return and that no
    /// client is returning right now.
    returnable: Vec<String>,
    /// Answers by operation and status.
    ops: BTreeMap<String, u64>,
}

impl Model {
    fn committed(&self) -> Lines {
        let mut sold = Lines::new();
        for order in self.orders.values() {
            for (sku, qty) in &order.lines {
                *sold.entry(sku.clone()).or_default() += qty;
            }
        }
        sold
    }
}

/// The shared state of one run.
struct Run {
    seed: u64,
    app: TestApp,
    skus: Vec<SkuSpec>,
    model: Mutex<Model>,
    /// Clients take it for read around each operation, the checker for
    /// write: a checkpoint sees no operation in flight.
    gate: RwLock<()>,
    /// Answers that break API.md without breaking the model (a refusal
    /// where the contract promises success): listed at the end.
    violations: Mutex<Vec<String>>,
}

impl Run {
    fn spec(&self, sku: &str) -> Option<&SkuSpec> {
        self.skus.iter().find(|s| s.sku == sku)
    }

    fn limit(&self, sku: &str) -> Option<i64> {
        self.spec(sku).and_then(|s| s.limit)
    }

    fn count(&self, op: &str, status: u16) {
        *self
            .model
            .lock()
            .unwrap()
            .ops
            .entry(format!("{op} {status}"))
            .or_default() += 1;
    }

    fn violation(&self, what: String) {
        eprintln!("[seed {}] VIOLATION: {what}", self.seed);
        self.violations.lock().unwrap().push(what);
    }
}

/// An HTTP answer.
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ms(run: &Run, time: &Value) -> i64 {
    let text = time.as_str().unwrap_or("");
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.timestamp_millis(),
        Err(e) => panic!("[seed {}] bad time {time}: {e}", run.seed),
    }
}

fn lines_of(v: &Value) -> Lines {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["sku"].as_str().unwrap_or("?").to_owned(),
                        l["qty"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn returned_of(v: &Value) -> Lines {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|l| l["returned_qty"].as_i64().unwrap_or(0) > 0)
                .map(|l| {
                    (
                        l["sku"].as_str().unwrap_or("?").to_owned(),
                        l["returned_qty"].as_i64().unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn lines_json(lines: &[(String, i64)]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|(sku, qty)| json!({ "sku": sku, "qty": qty }))
            .collect(),
    )
}

fn summed(lines: &[(String, i64)]) -> Lines {
    let mut out = Lines::new();
    for (sku, qty) in lines {
        *out.entry(sku.clone()).or_default() += qty;
    }
    out
}

/// Sends one request; every request must be answered, never with a 5xx,
/// and every error must be problem+json with its code.
async fn call(
    run: &Run,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&Value>,
    idempotency_key: Option<&str>,
) -> Answer {
    let what = format!(
        "{method} {path} {}",
        body.map(Value::to_string).unwrap_or_default()
    );
    let mut req = run
        .app
        .client
        .request(method, format!("{}{path}", run.app.address))
        .bearer_auth(key);
    if let Some(body) = body {
        req = req.json(body);
    }
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let res = match req.send().await {
        Ok(res) => res,
        Err(e) => panic!("[seed {}] {what}: no answer: {e:?}", run.seed),
    };
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = res.text().await.unwrap_or_default();
    check!(
        run,
        status < 500,
        "{what}: answered {status}: {text} (a 5xx leaves the model unable to know what changed)"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        check!(
            run,
            content_type == "application/problem+json"
                && body["code"].is_string()
                && body["status"] == status,
            "{what}: error {status} is not problem+json with its code: {content_type} {text}"
        );
    }
    Answer { status, body }
}

/// A request that must be refused.
struct Refusal {
    method: Method,
    path: String,
    key: &'static str,
    body: Option<Value>,
}

impl Refusal {
    fn reserve(body: Value) -> Self {
        Refusal {
            method: Method::POST,
            path: "/v1/reservations".into(),
            key: STOREFRONT,
            body: Some(body),
        }
    }
}

/// One concurrent client: its own random stream, its own holds.
struct Client {
    run: Arc<Run>,
    no: usize,
    rng: StdRng,
    /// Holds this client was last told are held.
    mine: Vec<String>,
    /// Holds this client ended (released, committed, expired).
    ended: Vec<String>,
    /// Adjustments this client made: (id, sku, delta).
    adjustments: Vec<(String, String, i64)>,
    /// No short holds after this, so that the final check does not wait long
    /// for the last ones to expire.
    short_holds_until: Instant,
    n: u64,
}

impl Client {
    fn new(run: Arc<Run>, no: usize) -> Self {
        let rng =
            StdRng::seed_from_u64(run.seed ^ (no as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Client {
            run,
            no,
            rng,
            mine: Vec::new(),
            ended: Vec::new(),
            adjustments: Vec::new(),
            short_holds_until: Instant::now(),
            n: 0,
        }
    }

    /// Runs operations until `deadline` or `max_ops`; returns how many.
    async fn drive(mut self, deadline: Instant, max_ops: u64) -> u64 {
        self.short_holds_until = deadline - Duration::from_millis(2_500);
        while Instant::now() < deadline && self.n < max_ops {
            self.n += 1;
            let roll = if self.mine.len() > 6 {
                // Enough open baskets: end some.
                self.rng.gen_range(30..63)
            } else {
                self.rng.gen_range(0..100)
            };
            if (63..66).contains(&roll) {
                self.commit_at_expiry().await;
                continue;
            }
            let run = self.run.clone();
            let _open = run.gate.read().await;
            match roll {
                0..=21 => self.reserve(false).await,
                22..=29 => self.reserve(true).await,
                30..=41 => self.patch().await,
                42..=56 => self.commit(None, "commit").await,
                57..=62 => self.release().await,
                66..=71 => self.adjust().await,
                72..=76 => self.return_units(false).await,
                77..=78 => self.reconcile().await,
                79..=84 => self.read_reservation().await,
                85..=87 => self.availability().await,
                _ => self.refused_request().await,
            }
        }
        self.n
    }

    fn sku(&mut self) -> String {
        let i = self.rng.gen_range(0..SKUS);
        self.run.skus[i].sku.clone()
    }

    fn customer(&mut self) -> String {
        format!("c{}", self.rng.gen_range(0..CUSTOMERS))
    }

    /// 1–6 lines (sometimes up to 12), now and then naming a SKU twice.
    fn basket(&mut self) -> Vec<(String, i64)> {
        let n = if self.rng.gen_bool(0.1) {
            self.rng.gen_range(7..=12)
        } else {
            self.rng.gen_range(1..=6)
        };
        let mut lines: Vec<(String, i64)> = Vec::with_capacity(n + 1);
        for _ in 0..n {
            let sku = self.sku();
            if lines.iter().any(|(s, _)| *s == sku) {
                continue;
            }
            let qty = if self.run.limit(&sku).is_some() {
                self.rng.gen_range(1..=2)
            } else {
                self.rng.gen_range(1..=3)
            };
            lines.push((sku, qty));
        }
        if self.rng.gen_bool(0.05) {
            // Lines naming the same SKU are summed.
            let again = lines[0].clone();
            lines.push(again);
        }
        lines
    }

    fn hold_model(&self, id: &str) -> HoldModel {
        let model = self.run.model.lock().unwrap();
        match model.holds.get(id) {
            Some(h) => h.clone(),
            None => panic!("[seed {}] hold {id} is not in the model", self.run.seed),
        }
    }

    /// Records what the client was told about a hold; ended holds leave `mine`.
    fn tell(&mut self, id: &str, told: Told) {
        if told != Told::Held {
            self.mine.retain(|m| m != id);
            self.ended.push(id.to_owned());
            if self.ended.len() > 64 {
                self.ended.remove(0);
            }
        }
        let mut model = self.run.model.lock().unwrap();
        if let Some(h) = model.holds.get_mut(id) {
            h.told = told;
        }
    }

    /// A hold answered expired must have run out (Redis and the test share
    /// the host clock).
    fn check_expired(&self, id: &str, h: &HoldModel, what: &str) {
        let now = now_ms();
        check!(
            self.run,
            now + 5 >= h.expires_ms,
            "{what}: hold {id} answered expired {} ms before its expires_at",
            h.expires_ms - now
        );
    }

    fn pick_mine(&mut self) -> Option<String> {
        self.mine.choose(&mut self.rng).cloned()
    }

    async fn reserve(&mut self, partial: bool) {
        let asked_lines = self.basket();
        let asked = summed(&asked_lines);
        let limited = asked.keys().any(|s| self.run.limit(s).is_some());
        let short_ttl = self.rng.gen_bool(0.3) && Instant::now() < self.short_holds_until;
        let ttl = if short_ttl {
            self.rng.gen_range(1..=2)
        } else {
            self.rng.gen_range(60..=900)
        };
        let customer = (limited || self.rng.gen_bool(0.8)).then(|| self.customer());
        let mut body = json!({
            "lines": lines_json(&asked_lines), "ttl_seconds": ttl, "allow_partial": partial,
        });
        if let Some(c) = &customer {
            body["customer_id"] = json!(c);
        }
        if self.rng.gen_bool(0.5) {
            body["channel"] = json!(if self.rng.gen_bool(0.5) {
                "web"
            } else {
                "phone"
            });
        }
        let key = if self.rng.gen_bool(0.3) {
            CALLCENTRE
        } else {
            STOREFRONT
        };
        let idem =
            (!partial && self.rng.gen_bool(0.1)).then(|| format!("k-{}-{}", self.no, self.n));
        let what = format!("client {} reserve {body}", self.no);
        let run = self.run.clone();
        let a = call(
            &run,
            Method::POST,
            "/v1/reservations",
            key,
            Some(&body),
            idem.as_deref(),
        )
        .await;
        let op = if partial {
            "reserve partial"
        } else {
            "reserve"
        };
        run.count(op, a.status);
        if let Some(k) = &idem {
            // A repeat with the same key and body gets the first answer.
            let again = call(
                &run,
                Method::POST,
                "/v1/reservations",
                key,
                Some(&body),
                Some(k),
            )
            .await;
            run.count("reserve repeated", again.status);
            check!(
                run,
                again.status == a.status && again.body["id"] == a.body["id"],
                "{what}: repeat with Idempotency-Key {k} answered {} {}, first {} {}",
                again.status,
                again.body,
                a.status,
                a.body
            );
        }
        match (a.status, a.code()) {
            (201, _) => {
                let id = a.body["id"].as_str().unwrap_or_default().to_owned();
                let got = lines_of(&a.body["lines"]);
                check!(
                    run,
                    a.body["status"] == "held" && a.body["customer_id"] == json!(customer),
                    "{what}: answered {}",
                    a.body
                );
                if partial {
                    let shortages: BTreeMap<String, (i64, i64)> = a.body["shortages"]
                        .as_array()
                        .map(|s| {
                            s.iter()
                                .map(|x| {
                                    (
                                        x["sku"].as_str().unwrap_or("?").to_owned(),
                                        (
                                            x["requested"].as_i64().unwrap_or(-1),
                                            x["available"].as_i64().unwrap_or(-1),
                                        ),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    for (sku, qty) in &asked {
                        let held = got.get(sku).copied().unwrap_or(0);
                        let expected_shortage = (held < *qty).then_some((*qty, held));
                        check!(
                            run,
                            held <= *qty && shortages.get(sku).copied() == expected_shortage,
                            "{what}: {sku} held {held} of {qty}, shortages {}",
                            a.body["shortages"]
                        );
                    }
                    check!(
                        run,
                        !got.is_empty() && got.keys().all(|s| asked.contains_key(s)),
                        "{what}: partial hold of {got:?}"
                    );
                } else {
                    check!(run, got == asked, "{what}: held {got:?}, asked {asked:?}");
                }
                let hold = HoldModel {
                    customer,
                    lines: got,
                    told: Told::Held,
                    expires_ms: ms(&run, &a.body["expires_at"]),
                };
                run.model.lock().unwrap().holds.insert(id.clone(), hold);
                // Half of the short holds are abandoned: left to expire.
                if !(short_ttl && self.rng.gen_bool(0.5)) {
                    self.mine.push(id);
                }
            }
            (409, "insufficient_stock") => {
                let shortages = a.body["shortages"].as_array().cloned().unwrap_or_default();
                check!(run, !shortages.is_empty(), "{what}: {}", a.body);
                for s in &shortages {
                    let sku = s["sku"].as_str().unwrap_or("?");
                    let requested = s["requested"].as_i64().unwrap_or(-1);
                    let available = s["available"].as_i64().unwrap_or(-1);
                    check!(
                        run,
                        asked.get(sku) == Some(&requested)
                            && (0..requested).contains(&available)
                            && (!partial || available == 0),
                        "{what}: shortage {s}"
                    );
                }
                if partial {
                    check!(
                        run,
                        shortages.len() == asked.len(),
                        "{what}: partial hold refused though some lines are not listed short: {}",
                        a.body
                    );
                }
            }
            (409, "per_customer_limit_exceeded") => self.check_limits(&what, &a, &asked),
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }

    fn check_limits(&self, what: &str, a: &Answer, asked: &Lines) {
        let limits = a.body["limits"].as_array().cloned().unwrap_or_default();
        check!(self.run, !limits.is_empty(), "{what}: {}", a.body);
        for l in &limits {
            let sku = l["sku"].as_str().unwrap_or("?");
            let limit = l["limit"].as_i64().unwrap_or(-1);
            let already = l["already"].as_i64().unwrap_or(-1);
            let requested = l["requested"].as_i64().unwrap_or(-1);
            check!(
                self.run,
                self.run.limit(sku) == Some(limit)
                    && asked.contains_key(sku)
                    && already + requested > limit
                    && already >= 0,
                "{what}: limit {l}"
            );
        }
    }

    async fn patch(&mut self) {
        let Some(id) = self.pick_mine() else {
            return self.reserve(false).await;
        };
        let h = self.hold_model(&id);
        let mut changes: Vec<(String, i64)> = Vec::new();
        for _ in 0..self.rng.gen_range(1..=3) {
            let existing: Vec<&String> = h.lines.keys().collect();
            let (sku, qty) = if !existing.is_empty() && self.rng.gen_bool(0.6) {
                let sku = existing[self.rng.gen_range(0..existing.len())].clone();
                (sku, self.rng.gen_range(0..=4))
            } else {
                (self.sku(), self.rng.gen_range(1..=3))
            };
            if !changes.iter().any(|(s, _)| *s == sku) {
                changes.push((sku, qty));
            }
        }
        let mut body = json!({});
        let only_ttl = self.rng.gen_bool(0.1);
        if !only_ttl {
            body["lines"] = lines_json(&changes);
        }
        if only_ttl || self.rng.gen_bool(0.3) {
            let short = self.rng.gen_bool(0.3) && Instant::now() < self.short_holds_until;
            body["ttl_seconds"] = json!(if short {
                self.rng.gen_range(1..=2)
            } else {
                self.rng.gen_range(60..=900)
            });
        }
        let mut expected = h.lines.clone();
        if !only_ttl {
            for (sku, qty) in &changes {
                if *qty == 0 {
                    expected.remove(sku);
                } else {
                    expected.insert(sku.clone(), *qty);
                }
            }
        }
        let raised: Lines = expected
            .iter()
            .filter(|(s, q)| h.lines.get(*s).copied().unwrap_or(0) < **q)
            .map(|(s, q)| (s.clone(), *q))
            .collect();
        let what = format!(
            "client {} patch {id} {body} (lines were {:?})",
            self.no, h.lines
        );
        let run = self.run.clone();
        let path = format!("/v1/reservations/{id}");
        let a = call(&run, Method::PATCH, &path, STOREFRONT, Some(&body), None).await;
        run.count("patch", a.status);
        match (a.status, a.code()) {
            (200, _) => {
                let got = lines_of(&a.body["lines"]);
                check!(
                    run,
                    got == expected && a.body["status"] == "held",
                    "{what}: answered {}, expected lines {expected:?}",
                    a.body
                );
                let expires_ms = ms(&run, &a.body["expires_at"]);
                check!(
                    run,
                    body.get("ttl_seconds").is_some() || expires_ms == h.expires_ms,
                    "{what}: expires_at moved without a ttl: {}",
                    a.body
                );
                let mut model = run.model.lock().unwrap();
                let m = model.holds.get_mut(&id).unwrap();
                m.lines = got;
                m.expires_ms = expires_ms;
            }
            (409, "insufficient_stock") => {
                for s in a.body["shortages"].as_array().cloned().unwrap_or_default() {
                    let sku = s["sku"].as_str().unwrap_or("?");
                    check!(
                        run,
                        raised.contains_key(sku),
                        "{what}: shortage {s} for a line not raised"
                    );
                }
            }
            (409, "per_customer_limit_exceeded") => self.check_limits(&what, &a, &raised),
            (410, "reservation_expired") => {
                self.check_expired(&id, &h, &what);
                self.tell(&id, Told::Expired);
            }
            (422, "validation_failed")
                if h.customer.is_none() && raised.keys().any(|s| run.limit(s).is_some()) => {}
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }

    /// Commits one of this client's holds (or `id`); `op` names it in the counts.
    async fn commit(&mut self, id: Option<String>, op: &str) {
        let Some(id) = id.or_else(|| self.pick_mine()) else {
            return self.reserve(false).await;
        };
        let h = self.hold_model(&id);
        let order_id = format!("o-{}-{}", self.no, self.n);
        let mut body = json!({ "order_id": order_id });
        if self.rng.gen_bool(0.3) {
            body["payment_ref"] = json!(format!("psp-{}-{}", self.no, self.n));
        }
        let what = format!(
            "client {} commit {id} {body} (lines {:?})",
            self.no, h.lines
        );
        let run = self.run.clone();
        let path = format!("/v1/reservations/{id}/commit");
        let a = call(&run, Method::POST, &path, STOREFRONT, Some(&body), None).await;
        run.count(op, a.status);
        match (a.status, a.code()) {
            (201 | 202, _) => {
                let lines = lines_of(&a.body["lines"]);
                check!(
                    run,
                    a.body["order_id"] == order_id
                        && a.body["reservation_id"] == id
                        && a.body["customer_id"] == json!(h.customer)
                        && lines == h.lines
                        && returned_of(&a.body["lines"]).is_empty()
                        && (a.status == 201) == a.body.get("persisted").is_none(),
                    "{what}: answered {} {}",
                    a.status,
                    a.body
                );
                {
                    let mut model = run.model.lock().unwrap();
                    model.orders.insert(
                        order_id.clone(),
                        OrderModel {
                            reservation: id.clone(),
                            customer: h.customer.clone(),
                            lines,
                            returned: Lines::new(),
                            persisted: a.status == 201,
                        },
                    );
                    if a.status == 201 {
                        model.returnable.push(order_id.clone());
                    }
                }
                self.tell(&id, Told::Committed(order_id.clone()));
                if self.rng.gen_bool(0.1) {
                    // Committing again returns the same order.
                    let again = call(
                        &run,
                        Method::POST,
                        &path,
                        STOREFRONT,
                        Some(&json!({})),
                        None,
                    )
                    .await;
                    run.count("commit again", again.status);
                    check!(
                        run,
                        again.status == 200
                            && again.body["order_id"] == order_id
                            && lines_of(&again.body["lines"]) == h.lines,
                        "{what}: committing again answered {} {}",
                        again.status,
                        again.body
                    );
                }
            }
            (410, "reservation_expired") => {
                self.check_expired(&id, &h, &what);
                self.tell(&id, Told::Expired);
            }
            (422, "validation_failed") if h.lines.is_empty() => {}
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }

    /// Commits a short hold right at its expiry: commit or expiry wins, one of them.
    async fn commit_at_expiry(&mut self) {
        let now = now_ms();
        let due: Vec<String> = {
            let model = self.run.model.lock().unwrap();
            self.mine
                .iter()
                .filter(|id| {
                    model.holds[*id].expires_ms < now + 2_500 && !model.holds[*id].lines.is_empty()
                })
                .cloned()
                .collect()
        };
        let Some(id) = due.choose(&mut self.rng).cloned() else {
            let run = self.run.clone();
            let _open = run.gate.read().await;
            return self.reserve(false).await;
        };
        let expires_ms = self.hold_model(&id).expires_ms;
        // Aim a little early: the request takes a while to reach Redis.
        let at = expires_ms - self.rng.gen_range(0..=250);
        let wait = (at - now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let run = self.run.clone();
        let _open = run.gate.read().await;
        self.commit(Some(id), "commit at expiry").await;
    }

    async fn release(&mut self) {
        let Some(id) = self.pick_mine() else {
            return self.reserve(false).await;
        };
        let h = self.hold_model(&id);
        let what = format!("client {} release {id}", self.no);
        let run = self.run.clone();
        let a = call(
            &run,
            Method::DELETE,
            &format!("/v1/reservations/{id}"),
            STOREFRONT,
            None,
            None,
        )
        .await;
        run.count("release", a.status);
        match (a.status, a.body["status"].as_str()) {
            (200, Some("released")) => self.tell(&id, Told::Released),
            (200, Some("expired")) => {
                self.check_expired(&id, &h, &what);
                self.tell(&id, Told::Expired);
            }
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }

    async fn adjust(&mut self) {
        let run = self.run.clone();
        if !self.adjustments.is_empty() && self.rng.gen_bool(0.1) {
            // A repeat of an adjustment id changes nothing and answers 200.
            let (adj, sku, delta) = self.adjustments.choose(&mut self.rng).cloned().unwrap();
            let body = json!({ "adjustment_id": adj, "delta": delta, "reason": "receipt" });
            let a = call(
                &run,
                Method::POST,
                &format!("/v1/skus/{sku}/adjustments"),
                ADMIN,
                Some(&body),
                None,
            )
            .await;
            run.count("adjust repeated", a.status);
            check!(
                run,
                a.status == 200,
                "client {} repeat adjustment {sku} {body}: answered {} {}",
                self.no,
                a.status,
                a.body
            );
            return;
        }
        let sku = self.sku();
        let delta = if self.rng.gen_bool(0.6) {
            self.rng.gen_range(1..=10)
        } else {
            -self.rng.gen_range(1..=6)
        };
        let adj = format!("a-{}-{}", self.no, self.n);
        let body = json!({ "adjustment_id": adj, "delta": delta, "reason": "cycle count" });
        let what = format!("client {} adjust {sku} {body}", self.no);
        let a = call(
            &run,
            Method::POST,
            &format!("/v1/skus/{sku}/adjustments"),
            ADMIN,
            Some(&body),
            None,
        )
        .await;
        let op = if delta > 0 { "adjust +" } else { "adjust -" };
        run.count(op, a.status);
        match (a.status, a.code()) {
            (201, _) => {
                let v = &a.body;
                let (on_hand, held, bo, available) = (
                    v["on_hand"].as_i64().unwrap_or(0),
                    v["held"].as_i64().unwrap_or(0),
                    v["backorder_limit"].as_i64().unwrap_or(-1),
                    v["available"].as_i64().unwrap_or(-1),
                );
                // With pools, available is theirs added up (safety stock
                // is part of on_hand, held by nobody).
                let expected = match v["pools"].as_array() {
                    Some(pools) => pools
                        .iter()
                        .map(|p| p["available"].as_i64().unwrap_or(-1))
                        .sum(),
                    None => on_hand - held + bo,
                };
                check!(
                    run,
                    available == expected && available >= 0,
                    "{what}: answered {v}"
                );
                *run.model
                    .lock()
                    .unwrap()
                    .adjusted
                    .entry(sku.clone())
                    .or_default() += delta;
                self.adjustments.push((adj, sku, delta));
            }
            // API.md: on_hand may not drop below held. A receipt (delta > 0)
            // never makes it drop, so it must never be refused.
            (409, "insufficient_stock") if delta < 0 => {}
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }

    /// Returns units of an order answered 201 (or, `too_many`, one more
    /// unit than is returnable: refused, nothing recorded).
    async fn return_units(&mut self, too_many: bool) {
        let run = self.run.clone();
        let claimed = {
            let mut model = run.model.lock().unwrap();
            if model.returnable.is_empty() {
                None
            } else {
                let i = self.rng.gen_range(0..model.returnable.len());
                let order_id = model.returnable.swap_remove(i);
                let order = model.orders[&order_id].clone();
                Some((order_id, order))
            }
        };
        let Some((order_id, order)) = claimed else {
            return self.reserve(false).await;
        };
        let open: Vec<(String, i64)> = order
            .lines
            .iter()
            .map(|(s, q)| (s.clone(), q - order.returned.get(s).copied().unwrap_or(0)))
            .filter(|(_, left)| *left > 0)
            .collect();
        let mut lines: Vec<(String, i64)> = Vec::new();
        for (sku, left) in &open {
            if self.rng.gen_bool(0.5) {
                lines.push((sku.clone(), self.rng.gen_range(1..=*left)));
            }
        }
        if lines.is_empty() {
            lines.push((open[0].0.clone(), 1));
        }
        if too_many {
            lines[0].1 = open.iter().find(|(s, _)| *s == lines[0].0).unwrap().1 + 1;
        }
        let restock = self.rng.gen_bool(0.6);
        let return_id = format!("rt-{}-{}", self.no, self.n);
        let body =
            json!({ "return_id": return_id, "lines": lines_json(&lines), "restock": restock });
        let what = format!(
            "client {} return {order_id} {body} (order {:?}, returned {:?})",
            self.no, order.lines, order.returned
        );
        let path = format!("/v1/orders/{order_id}/returns");
        let a = call(&run, Method::POST, &path, ADMIN, Some(&body), None).await;
        let mut returned = order.returned.clone();
        match (too_many, a.status, a.code()) {
            (false, 201, _) => {
                run.count("return", a.status);
                for (sku, qty) in &lines {
                    *returned.entry(sku.clone()).or_default() += qty;
                }
                check!(
                    run,
                    returned_of(&a.body["lines"]) == returned
                        && lines_of(&a.body["lines"]) == order.lines,
                    "{what}: answered {}",
                    a.body
                );
                let mut model = run.model.lock().unwrap();
                model.orders.get_mut(&order_id).unwrap().returned = returned.clone();
                if restock {
                    for (sku, qty) in &lines {
                        *model.restocked.entry(sku.clone()).or_default() += qty;
                    }
                }
            }
            (true, 409, "return_exceeds_order") => {
                run.count("return too many", a.status);
                let first = &a.body["lines"][0];
                check!(
                    run,
                    first["sku"] == lines[0].0.as_str()
                        && first["requested"] == lines[0].1
                        && first["returnable"] == lines[0].1 - 1,
                    "{what}: answered {}",
                    a.body
                );
            }
            _ => {
                run.count(
                    if too_many {
                        "return too many"
                    } else {
                        "return"
                    },
                    a.status,
                );
                run.violation(format!("{what}: unexpected {} {}", a.status, a.body));
            }
        }
        if !too_many && a.status == 201 && self.rng.gen_bool(0.1) {
            // A repeat of a return id changes nothing and answers 200.
            let again = call(&run, Method::POST, &path, ADMIN, Some(&body), None).await;
            run.count("return repeated", again.status);
            check!(
                run,
                again.status == 200 && returned_of(&again.body["lines"]) == returned,
                "{what}: repeat answered {} {}",
                again.status,
                again.body
            );
        }
        let left = order
            .lines
            .iter()
            .any(|(s, q)| returned.get(s).copied().unwrap_or(0) < *q);
        if left {
            run.model.lock().unwrap().returnable.push(order_id);
        }
    }

    async fn reconcile(&mut self) {
        let run = self.run.clone();
        let repair = self.rng.gen_bool(0.3);
        let mut body = json!({ "repair": repair });
        if self.rng.gen_bool(0.3) {
            body["skus"] = json!([self.sku(), self.sku()]);
        }
        let a = call(
            &run,
            Method::POST,
            "/v1/admin/reconcile",
            ADMIN,
            Some(&body),
            None,
        )
        .await;
        run.count(
            if repair {
                "reconcile repair"
            } else {
                "reconcile dry run"
            },
            a.status,
        );
        // The scripts keep the counts right, so drift found under load is the
        // reconciliation miscounting (and a repair of it breaks conservation,
        // which the next checkpoint sees).
        if a.status != 200 || a.body["drifted"] != json!([]) {
            run.violation(format!(
                "client {} reconcile {body} under load: {} {}",
                self.no, a.status, a.body
            ));
        }
    }

    async fn read_reservation(&mut self) {
        let candidates: Vec<&String> = self.mine.iter().chain(self.ended.iter()).collect();
        let Some(id) = candidates.choose(&mut self.rng).map(|s| (*s).clone()) else {
            return self.availability().await;
        };
        let run = self.run.clone();
        let a = call(
            &run,
            Method::GET,
            &format!("/v1/reservations/{id}"),
            STOREFRONT,
            None,
            None,
        )
        .await;
        run.count("get reservation", a.status);
        let h = self.hold_model(&id);
        let status = a.body["status"].as_str().unwrap_or("?");
        let fits = match &h.told {
            Told::Held if status == "held" => lines_of(&a.body["lines"]) == h.lines,
            Told::Held => status == "expired" && now_ms() + 5 >= h.expires_ms,
            Told::Committed(_) => status == "committed" && lines_of(&a.body["lines"]) == h.lines,
            Told::Released => status == "released",
            Told::Expired => status == "expired",
        };
        check!(
            run,
            a.status == 200 && fits,
            "client {} GET reservation {id} told {:?} {h:?}: answered {} {}",
            self.no,
            h.told,
            a.status,
            a.body
        );
    }

    async fn availability(&mut self) {
        let mut skus: Vec<String> = (0..self.rng.gen_range(1..=5)).map(|_| self.sku()).collect();
        skus.push("NOPE".into());
        skus.shuffle(&mut self.rng);
        let query: Vec<String> = skus.iter().map(|s| format!("sku={s}")).collect();
        let run = self.run.clone();
        let path = format!("/v1/availability?{}", query.join("&"));
        let a = call(&run, Method::GET, &path, STOREFRONT, None, None).await;
        run.count("availability", a.status);
        let items = a.body["items"].as_array().cloned().unwrap_or_default();
        check!(
            run,
            a.status == 200 && items.len() == skus.len(),
            "GET {path}: {} {}",
            a.status,
            a.body
        );
        for (item, sku) in items.iter().zip(&skus) {
            let available = item["available"].as_i64().unwrap_or(-1);
            check!(
                run,
                item["sku"] == sku.as_str()
                    && available >= 0
                    && item["in_stock"] == (available > 0)
                    && (sku != "NOPE" || available == 0),
                "GET {path}: item {item}"
            );
        }
    }

    /// A request the service must refuse, changing nothing (invariant 6:
    /// checked by the model and the conservation checks).
    async fn refused_request(&mut self) {
        let run = self.run.clone();
        let limited: Vec<SkuSpec> = run
            .skus
            .iter()
            .filter(|s| s.limit.is_some())
            .cloned()
            .collect();
        let no = self.no;
        let adjustment = |sku: String, delta: i64, key, n| Refusal {
            method: Method::POST,
            path: format!("/v1/skus/{sku}/adjustments"),
            key,
            body: Some(json!({ "adjustment_id": format!("a-{no}-{n}"), "delta": delta })),
        };
        let (op, status, code, request) = match self.rng.gen_range(0..13) {
            0 => {
                let mut lines = self.basket();
                lines.push((format!("NOPE-{}", self.n), 1));
                let body = json!({ "lines": lines_json(&lines), "customer_id": self.customer() });
                ("unknown SKU", 422, "unknown_sku", Refusal::reserve(body))
            }
            1 => {
                let mut lines = self.basket();
                lines.push((self.sku(), 0));
                let body = json!({ "lines": lines_json(&lines), "customer_id": self.customer() });
                ("qty 0", 422, "validation_failed", Refusal::reserve(body))
            }
            2 => {
                // Without limited SKUs: a customer at their limit is refused first.
                let mut lines = self.basket();
                lines.retain(|(s, _)| run.limit(s).is_none());
                let sku = self.unlimited_sku();
                lines.retain(|(s, _)| *s != sku);
                lines.push((sku, 1_000_000));
                let body = json!({ "lines": lines_json(&lines), "customer_id": self.customer() });
                (
                    "far too many",
                    409,
                    "insufficient_stock",
                    Refusal::reserve(body),
                )
            }
            3 => {
                let spec = limited.choose(&mut self.rng).unwrap();
                let qty = spec.limit.unwrap() + 1;
                let body = json!({
                    "lines": [{ "sku": spec.sku, "qty": qty }], "customer_id": self.customer(),
                });
                (
                    "over the customer limit",
                    409,
                    "per_customer_limit_exceeded",
                    Refusal::reserve(body),
                )
            }
            4 => {
                let spec = limited.choose(&mut self.rng).unwrap();
                let body = json!({ "lines": [{ "sku": spec.sku, "qty": 1 }] });
                (
                    "limited SKU without customer",
                    422,
                    "validation_failed",
                    Refusal::reserve(body),
                )
            }
            5 => {
                let mut lines = self.basket();
                lines.push((LATER.to_owned(), 1));
                let body = json!({ "lines": lines_json(&lines), "customer_id": self.customer() });
                (
                    "sale not started",
                    409,
                    "sale_not_started",
                    Refusal::reserve(body),
                )
            }
            6 => {
                let request = adjustment(self.sku(), -1_000_000, ADMIN, self.n);
                ("adjust below held", 409, "insufficient_stock", request)
            }
            7 => {
                let request = adjustment(self.sku(), 5, STOREFRONT, self.n);
                ("adjust as storefront", 403, "forbidden", request)
            }
            8 => {
                let request = Refusal {
                    method: Method::POST,
                    path: format!(
                        "/v1/reservations/res_{:032x}/commit",
                        self.rng.gen::<u128>()
                    ),
                    key: STOREFRONT,
                    body: Some(json!({})),
                };
                ("commit unknown reservation", 404, "not_found", request)
            }
            9 => return self.act_on_ended_hold().await,
            10 => return self.commit_with_taken_order_id().await,
            11 => return self.return_units(true).await,
            _ => return self.patch_far_too_many().await,
        };
        let Refusal {
            method,
            path,
            key,
            body,
        } = request;
        let what = format!(
            "client {} refused request ({op}): {method} {path} {body:?}",
            self.no
        );
        let a = call(&run, method, &path, key, body.as_ref(), None).await;
        run.count(&format!("refused: {op}"), a.status);
        if a.status != status || a.code() != code {
            run.violation(format!(
                "{what}: expected {status} {code}, got {} {}",
                a.status, a.body
            ));
        }
    }

    fn unlimited_sku(&mut self) -> String {
        let run = self.run.clone();
        let unlimited: Vec<&SkuSpec> = run.skus[..SKUS]
            .iter()
            .filter(|s| s.limit.is_none())
            .collect();
        unlimited.choose(&mut self.rng).unwrap().sku.clone()
    }

    /// Commit, patch or release a hold this client ended.
    async fn act_on_ended_hold(&mut self) {
        let Some(id) = self.ended.choose(&mut self.rng).cloned() else {
            return self.availability().await;
        };
        let h = self.hold_model(&id);
        let action = self.rng.gen_range(0..3);
        let (method, path, body) = match action {
            0 => (
                Method::POST,
                format!("/v1/reservations/{id}/commit"),
                Some(json!({})),
            ),
            1 => (
                Method::PATCH,
                format!("/v1/reservations/{id}"),
                Some(json!({ "lines": [{ "sku": self.sku(), "qty": 1 }] })),
            ),
            _ => (Method::DELETE, format!("/v1/reservations/{id}"), None),
        };
        let expected: (u16, &str) = match (&h.told, action) {
            (Told::Committed(_), 0) => (200, ""),
            (Told::Committed(_), _) => (409, "reservation_committed"),
            (Told::Released, 2) => (200, "released"),
            (Told::Released, _) => (409, "reservation_released"),
            (Told::Expired, 2) => (200, "expired"),
            (Told::Expired, _) => (410, "reservation_expired"),
            (Told::Held, _) => unreachable!("ended holds are not held"),
        };
        let run = self.run.clone();
        let what = format!(
            "client {} {method} {path} on a hold told {:?}",
            self.no, h.told
        );
        let a = call(&run, method, &path, STOREFRONT, body.as_ref(), None).await;
        run.count("refused: act on an ended hold", a.status);
        let got = if a.status == 200 {
            a.body["status"].as_str().unwrap_or("").to_owned()
        } else {
            a.code().to_owned()
        };
        let fits = match (&h.told, action) {
            (Told::Committed(order_id), 0) => {
                a.status == 200 && a.body["order_id"] == order_id.as_str()
            }
            _ => (a.status, got.as_str()) == expected,
        };
        if !fits {
            run.violation(format!(
                "{what}: expected {expected:?}, got {} {}",
                a.status, a.body
            ));
        }
    }

    /// An order id is unique: reusing one is refused and the hold stays held.
    async fn commit_with_taken_order_id(&mut self) {
        let run = self.run.clone();
        let taken = {
            let model = run.model.lock().unwrap();
            let ids: Vec<&String> = model.orders.keys().collect();
            ids.choose(&mut self.rng).map(|s| (*s).clone())
        };
        let (Some(taken), Some(id)) = (taken, self.pick_mine()) else {
            return self.availability().await;
        };
        let h = self.hold_model(&id);
        let what = format!("client {} commit {id} as taken order id {taken}", self.no);
        let path = format!("/v1/reservations/{id}/commit");
        let a = call(
            &run,
            Method::POST,
            &path,
            STOREFRONT,
            Some(&json!({ "order_id": taken })),
            None,
        )
        .await;
        run.count("refused: taken order id", a.status);
        match (a.status, a.code()) {
            (422, "validation_failed") => {}
            (410, "reservation_expired") => {
                self.check_expired(&id, &h, &what);
                self.tell(&id, Told::Expired);
            }
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }

    /// Raising a line far beyond stock is refused and the hold is unchanged.
    async fn patch_far_too_many(&mut self) {
        let Some(id) = self.pick_mine() else {
            return self.availability().await;
        };
        let h = self.hold_model(&id);
        let sku = self.unlimited_sku();
        let body = json!({ "lines": [{ "sku": sku, "qty": 1_000_000 }] });
        let run = self.run.clone();
        let what = format!("client {} patch {id} {body}", self.no);
        let a = call(
            &run,
            Method::PATCH,
            &format!("/v1/reservations/{id}"),
            STOREFRONT,
            Some(&body),
            None,
        )
        .await;
        run.count("refused: patch far too many", a.status);
        match (a.status, a.code()) {
            (409, "insufficient_stock") => {}
            (410, "reservation_expired") => {
                self.check_expired(&id, &h, &what);
                self.tell(&id, Told::Expired);
            }
            _ => run.violation(format!("{what}: unexpected {} {}", a.status, a.body)),
        }
    }
}

/// Counts and settings of a SKU as Redis has them.
#[derive(Debug, Clone, Default)]
struct LiveSku {
    on_hand: i64,
    /// Every pool's.
    held: i64,
    backorder: i64,
    limit: Option<i64>,
    /// "safety chan ..." as Redis keeps the SKU's pools ('' for none).
    pools: String,
    /// The shared pool's available count.
    shared_available: i64,
    /// Each allocation: (share, held from it).
    allocations: BTreeMap<String, (i64, i64)>,
}

/// (sku, qty, counted against the customer's limit)
type LiveLine = (String, i64, bool);

/// Units of a record's lines held from its channel's allocation:
/// (sku, channel) -> units.
type LivePooled = BTreeMap<(String, String), i64>;

#[derive(Debug, Clone)]
struct LiveHold {
    state: String,
    customer: String,
    expires_ms: i64,
    lines: Vec<LiveLine>,
    /// Each record's own state and lines: the home's, and each part's (a
    /// part follows its home a moment later).
    records: Vec<(String, Vec<LiveLine>)>,
    order_id: String,
    /// Each record's units held from allocations (as `records`).
    pooled: Vec<LivePooled>,
}

impl LiveHold {
    fn lines(&self) -> Lines {
        self.lines.iter().map(|(s, q, _)| (s.clone(), *q)).collect()
    }
}

/// Everything in Redis, read in one atomic step.
struct Live {
    now_ms: i64,
    skus: BTreeMap<String, LiveSku>,
    holds: HashMap<String, LiveHold>,
    customers: BTreeMap<String, Lines>,
}

fn value<T: redis::FromRedisValue>(run: &Run, v: &redis::Value) -> T {
    match redis::from_redis_value(v) {
        Ok(t) => t,
        Err(e) => panic!("[seed {}] unexpected Redis value {v:?}: {e}", run.seed),
    }
}

/// Redis's TIME, then the answers to `reads` in their order: in one
/// MULTI/EXEC on a single Redis; on a cluster (where one MULTI cannot span
/// nodes) in one MULTI/EXEC per partition, so each partition is read at one
/// instant (the checks compare counts within a partition; a basket's home
/// and parts may differ for a moment on a single Redis too).
async fn atomic_reads(
    run: &Run,
    conn: &mut RedisConn,
    reads: Vec<(String, redis::Cmd)>,
) -> Vec<redis::Value> {
    if !run.app.settings.redis.cluster {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("TIME");
        for (_, cmd) in reads {
            pipe.add_command(cmd);
        }
        return pipe.query_async(conn).await.unwrap();
    }
    let time: redis::Value = redis::cmd("TIME").query_async(conn).await.unwrap();
    let mut groups: BTreeMap<String, Vec<(usize, redis::Cmd)>> = BTreeMap::new();
    for (i, (base, cmd)) in reads.into_iter().enumerate() {
        groups.entry(base).or_default().push((i, cmd));
    }
    let mut values = vec![redis::Value::Nil; groups.values().map(Vec::len).sum::<usize>() + 1];
    values[0] = time;
    for group in groups.into_values() {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (_, cmd) in &group {
            pipe.add_command(cmd.clone());
        }
        let answers: Vec<redis::Value> = pipe.query_async(conn).await.unwrap();
        for ((i, _), answer) in group.iter().zip(answers) {
            values[i + 1] = answer;
        }
    }
    values
}

/// Reads every SKU, hold and per-customer count in one MULTI/EXEC, so that
/// the reaper cannot expire a hold between two reads. With several
/// partitions (one Redis here) every partition's keys are read; a basket
/// over several partitions is one hold made of its home record (which has
/// its state) and its parts (each with its partition's lines).
async fn read_live(run: &Run) -> Live {
    let keys = run.app.stock.engine.keys();
    let bases: Vec<String> = keys
        .partitions()
        .all()
        .map(|p| keys.part(p).base().to_owned())
        .collect();
    let mut conn = run.app.redis().await;
    let mut hold_keys = Vec::new();
    let mut customer_keys = Vec::new();
    for base in &bases {
        for key in run.app.redis_keys(&format!("{base}hold:*")).await {
            hold_keys.push((base.len(), key));
        }
        for key in run.app.redis_keys(&format!("{base}cust:*")).await {
            customer_keys.push((base.len(), key));
        }
    }
    // Each read with the partition base of its key.
    let mut reads: Vec<(String, redis::Cmd)> = Vec::new();
    // Layout of lua/common.lua: per-SKU fields of partition hashes (held is
    // on_hand + backorder limit - available), and holds as \x1f records.
    for spec in &run.skus {
        let base = run.app.redis_base(&spec.sku);
        for hash in ["avail", "onhand", "bo", "rules", "pools"] {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(format!("{base}{hash}")).arg(&spec.sku);
            reads.push((base.clone(), cmd));
        }
        // Each allocation's share and available count, as set up.
        for (channel, _) in &spec.allocations {
            for hash in ["pshare", "pavail"] {
                let mut cmd = redis::cmd("HGET");
                cmd.arg(format!("{base}{hash}:{channel}")).arg(&spec.sku);
                reads.push((base.clone(), cmd));
            }
        }
    }
    for (base_len, key) in &hold_keys {
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        reads.push((key[..*base_len].to_owned(), cmd));
    }
    for (base_len, key) in &customer_keys {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(key);
        reads.push((key[..*base_len].to_owned(), cmd));
    }
    let values = atomic_reads(run, &mut conn, reads).await;
    let mut values = values.iter();
    let (secs, micros): (i64, i64) = value(run, values.next().unwrap());
    let mut skus = BTreeMap::new();
    for spec in &run.skus {
        let avail: Option<i64> = value(run, values.next().unwrap());
        let on_hand: Option<i64> = value(run, values.next().unwrap());
        let backorder: Option<i64> = value(run, values.next().unwrap());
        let rules: Option<String> = value(run, values.next().unwrap());
        let pools: Option<String> = value(run, values.next().unwrap());
        let mut allocations = BTreeMap::new();
        for (channel, _) in &spec.allocations {
            let share: Option<i64> = value(run, values.next().unwrap());
            let avail: Option<i64> = value(run, values.next().unwrap());
            check!(
                run,
                share.is_some() && avail.is_some(),
                "{}'s allocation for {channel} is missing from Redis",
                spec.sku
            );
            let (share, avail) = (share.unwrap(), avail.unwrap());
            allocations.insert(channel.clone(), (share, share - avail));
        }
        check!(
            run,
            avail.is_some() && on_hand.is_some(),
            "SKU {} is missing from Redis",
            spec.sku
        );
        let (avail, on_hand, backorder) =
            (avail.unwrap(), on_hand.unwrap(), backorder.unwrap_or(0));
        let pools = pools.unwrap_or_default();
        let safety: i64 = pools
            .split(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let shares: i64 = allocations.values().map(|(share, _)| share).sum();
        let pool_held: i64 = allocations.values().map(|(_, held)| held).sum();
        // The SKU's own field is its shared pool's (lua/common.lua).
        let shared_held = on_hand - shares - safety + backorder - avail;
        let limit = rules
            .as_deref()
            .and_then(|r| r.split(' ').next())
            .and_then(|pcl| pcl.parse().ok());
        skus.insert(
            spec.sku.clone(),
            LiveSku {
                on_hand,
                held: shared_held + pool_held,
                backorder,
                limit,
                pools,
                shared_available: avail,
                allocations,
            },
        );
    }
    let mut holds: HashMap<String, LiveHold> = HashMap::new();
    for (base_len, key) in &hold_keys {
        let record: Option<String> = value(run, values.next().unwrap());
        let record = record.unwrap_or_default();
        let f: Vec<&str> = record.split('\x1f').collect();
        check!(
            run,
            (11..=19).contains(&f.len()),
            "hold record {key}: {record:?}"
        );
        let field = |i: usize| f.get(i).copied().unwrap_or("");
        check!(
            run,
            field(15).is_empty(),
            "hold record {key} has a change pending at a checkpoint: {record:?}"
        );
        let counted: BTreeSet<&str> = f[8].split_whitespace().collect();
        let lines: Vec<LiveLine> = f[9]
            .split_whitespace()
            .zip(f[10].split_whitespace())
            .map(|(sku, q)| (sku.to_owned(), q.parse().unwrap(), counted.contains(sku)))
            .collect();
        let pq: Vec<&str> = field(17).split_whitespace().collect();
        let pooled: LivePooled = if field(17) == "*" {
            // Every line in full.
            lines
                .iter()
                .map(|(sku, q, _)| ((sku.clone(), f[2].to_owned()), *q))
                .collect()
        } else {
            pq.chunks_exact(2)
                .map(|c| ((c[0].to_owned(), f[2].to_owned()), c[1].parse().unwrap()))
                .collect()
        };
        let id = key[base_len + "hold:".len()..].to_owned();
        let hold = holds.entry(id).or_insert_with(|| LiveHold {
            state: String::new(),
            customer: String::new(),
            expires_ms: 0,
            lines: Vec::new(),
            records: Vec::new(),
            order_id: String::new(),
            pooled: Vec::new(),
        });
        hold.lines.extend(lines.iter().cloned());
        hold.records.push((f[0].to_owned(), lines));
        hold.pooled.push(pooled);
        // A part names its home (field 12); the home record has the state.
        if field(11).is_empty() {
            hold.state = f[0].to_owned();
            hold.customer = f[1].to_owned();
            hold.expires_ms = f[4].parse().unwrap_or(0);
            hold.order_id = f[5].to_owned();
        }
    }
    for (id, hold) in &holds {
        check!(
            run,
            !hold.state.is_empty(),
            "hold {id} has parts but no home record"
        );
    }
    let mut customers: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (base_len, key) in &customer_keys {
        let counts: BTreeMap<String, i64> = value(run, values.next().unwrap());
        customers
            .entry(key[base_len + "cust:".len()..].to_owned())
            .or_default()
            .extend(counts);
    }
    Live {
        now_ms: secs * 1000 + micros / 1000,
        skus,
        holds,
        customers,
    }
}

/// Invariants 1–4 and 6 in Redis, and Redis against the model.
fn check_redis(run: &Run, live: &Live, model: &Model, label: &str) {
    let committed = model.committed();
    let mut held = Lines::new();
    let mut sold = Lines::new();
    let mut per_customer: BTreeMap<String, Lines> = BTreeMap::new();
    // Units held from each allocation: (sku, channel) -> units.
    let mut pooled_held: LivePooled = BTreeMap::new();
    for (id, h) in live.holds.iter() {
        for ((state, lines), pooled) in h.records.iter().zip(&h.pooled) {
            for ((sku, channel), units) in pooled {
                let qty = lines.iter().find(|l| &l.0 == sku).map_or(0, |l| l.1);
                let allocated = run
                    .spec(sku)
                    .is_some_and(|s| s.allocations.iter().any(|(c, _)| c == channel));
                check!(
                    run,
                    allocated && (1..=qty).contains(units),
                    "{label}: hold {id} holds {units} of {sku} (line of {qty}) from {channel}'s \
                     allocation, which {}",
                    if allocated {
                        "it has"
                    } else {
                        "it has none of"
                    }
                );
                if state == "held" {
                    *pooled_held
                        .entry((sku.clone(), channel.clone()))
                        .or_default() += units;
                }
            }
        }
    }
    for (id, h) in live
        .holds
        .iter()
        .flat_map(|(id, h)| h.records.iter().map(move |r| (id, r)))
    {
        let (state, lines) = h;
        let into = match state.as_str() {
            "held" => Some(&mut held),
            "committed" => Some(&mut sold),
            _ => None,
        };
        let h = &live.holds[id];
        if let Some(into) = into {
            for (sku, qty, counted) in lines {
                *into.entry(sku.clone()).or_default() += qty;
                check!(
                    run,
                    *counted == (run.limit(sku).is_some() && !h.customer.is_empty()),
                    "{label}: hold {id} line {sku} counted={counted} against customer {:?}",
                    h.customer
                );
                if *counted {
                    *per_customer
                        .entry(h.customer.clone())
                        .or_default()
                        .entry(sku.clone())
                        .or_default() += qty;
                }
            }
        }
    }
    for spec in &run.skus {
        let s = &spec.sku;
        let c = &live.skus[s];
        let available = c.on_hand - c.held + c.backorder;
        check!(
            run,
            available >= 0 && c.held >= 0,
            "{label}: invariant 1: {s} on_hand {} − held {} + backorder {} = {available}",
            c.on_hand,
            c.held,
            c.backorder
        );
        let pools = if spec.safety == 0 && spec.allocations.is_empty() {
            String::new()
        } else {
            // (A JSON object's members come in name order.)
            let channels: BTreeSet<&String> = spec.allocations.iter().map(|(c, _)| c).collect();
            std::iter::once(spec.safety.to_string())
                .chain(channels.into_iter().cloned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        check!(
            run,
            c.backorder == spec.backorder && c.limit == spec.limit && c.pools == pools,
            "{label}: {s} settings changed: {c:?}, set up as {spec:?}"
        );
        // The pools: no allocation is held beyond its share (so no channel
        // holds another's units), the shared pool not beyond its own, what
        // holds took from each adds up, safety stock is never held.
        check!(
            run,
            c.shared_available >= 0 && c.held <= c.on_hand - spec.safety + c.backorder,
            "{label}: pools: {s} shared available {}, held {} of on_hand {} with {} kept back",
            c.shared_available,
            c.held,
            c.on_hand,
            spec.safety
        );
        for (channel, (share, held)) in &c.allocations {
            let by_holds = pooled_held
                .get(&(s.clone(), channel.clone()))
                .copied()
                .unwrap_or(0);
            check!(
                run,
                0 <= *held && held <= share && *held == by_holds,
                "{label}: pools: {s}'s allocation for {channel}: share {share}, held {held}, \
                 its holds took {by_holds}"
            );
        }
        let held_by_holds = held.get(s).copied().unwrap_or(0);
        check!(
            run,
            c.held == held_by_holds,
            "{label}: invariant 2: {s} held {} but its lines in held holds sum to {held_by_holds}",
            c.held
        );
        let adjusted = model.adjusted.get(s).copied().unwrap_or(0);
        let restocked = model.restocked.get(s).copied().unwrap_or(0);
        let acknowledged = committed.get(s).copied().unwrap_or(0);
        let in_redis = sold.get(s).copied().unwrap_or(0);
        check!(
            run,
            spec.initial + adjusted + restocked == c.on_hand + acknowledged,
            "{label}: invariant 3 (Redis): {s} initial {} + adjustments {adjusted} + restocked {restocked} \
             ≠ on_hand {} + acknowledged commits {acknowledged}",
            spec.initial,
            c.on_hand
        );
        check!(
            run,
            in_redis == acknowledged,
            "{label}: invariant 4: {s} committed holds in Redis sum to {in_redis}, acknowledged commits to {acknowledged}"
        );
    }
    for (customer, counts) in &live.customers {
        let expected = per_customer.get(customer).cloned().unwrap_or_default();
        let counts: Lines = counts
            .iter()
            .filter(|(_, q)| **q != 0)
            .map(|(s, q)| (s.clone(), *q))
            .collect();
        check!(
            run,
            counts == expected,
            "{label}: customer {customer} counts {counts:?}, holds and purchases say {expected:?}"
        );
    }
    for (customer, expected) in &per_customer {
        check!(
            run,
            live.customers.contains_key(customer) || expected.values().all(|q| *q == 0),
            "{label}: customer {customer} has no counts, holds and purchases say {expected:?}"
        );
        for (sku, qty) in expected {
            let limit = run.limit(sku).unwrap_or(i64::MAX);
            check!(
                run,
                *qty <= limit,
                "{label}: customer {customer} holds and bought {qty} of {sku}, limit {limit}"
            );
        }
    }
    let live_ids: BTreeSet<&String> = live.holds.keys().collect();
    let model_ids: BTreeSet<&String> = model.holds.keys().collect();
    check!(
        run,
        live_ids == model_ids,
        "{label}: holds in Redis and holds clients were told about differ: only in Redis {:?}, only told {:?}",
        live_ids
            .difference(&model_ids)
            .take(5)
            .map(|id| (id, &live.holds[*id].records))
            .collect::<Vec<_>>(),
        model_ids.difference(&live_ids).take(5).collect::<Vec<_>>()
    );
    for (id, m) in &model.holds {
        let h = &live.holds[id];
        let fits = match &m.told {
            Told::Committed(order_id) => {
                h.state == "committed" && h.order_id == *order_id && h.lines() == m.lines
            }
            Told::Released => h.state == "released",
            Told::Expired => h.state == "expired",
            Told::Held if h.state == "held" => h.lines() == m.lines && h.expires_ms == m.expires_ms,
            Told::Held => h.state == "expired" && h.expires_ms <= live.now_ms,
        };
        check!(
            run,
            fits && h.customer == m.customer.clone().unwrap_or_default(),
            "{label}: hold {id}: told {:?} {m:?}, Redis has {h:?} (Redis time {})",
            m.told,
            live.now_ms
        );
        if h.state == "held" && h.expires_ms + EXPIRY_PROMISE_MS < live.now_ms {
            run.violation(format!(
                "{label}: hold {id} still held {} ms after its expires_at (API.md: at most 2 s)",
                live.now_ms - h.expires_ms
            ));
        }
    }
}

/// Waits until every partition's drain watermark has passed its last
/// outbox entry.
async fn wait_for_drain(run: &Run, label: &str) {
    let keys = run.app.stock.engine.keys();
    for p in keys.partitions().all() {
        let key = keys.part(p).outbox();
        let mut conn = run.app.redis().await;
        let last: Vec<(String, HashMap<String, String>)> = redis::cmd("XREVRANGE")
            .arg(&key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let Some((last, _)) = last.first() else {
            continue;
        };
        let (ms, seq) = last.split_once('-').unwrap();
        let last: (i64, i64) = (ms.parse().unwrap(), seq.parse().unwrap());
        let drained = run
            .app
            .eventually(DRAIN_PATIENCE, || async {
                sqlx::query_as::<_, (i64, i64)>(
                    "SELECT stream_ms, stream_seq FROM outbox_watermark WHERE partition = $1",
                )
                .bind(p.name())
                .fetch_optional(run.app.db())
                .await
                .unwrap()
                .is_some_and(|w| w >= last)
            })
            .await;
        check!(
            run,
            drained,
            "{label}: the outbox drain of {p} did not reach the last entry {last:?} within {DRAIN_PATIENCE:?}"
        );
    }
}

/// Invariants 3–5 in Postgres, once the outbox is drained.
async fn check_postgres(run: &Run, live: &Live, model: &Model, label: &str) {
    let db = run.app.db();
    let on_hand: BTreeMap<String, i64> = sqlx::query_as("SELECT sku, on_hand FROM sku_stock")
        .fetch_all(db)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let movements: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT sku, kind, sum(delta)::bigint FROM stock_movements GROUP BY sku, kind",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut by_kind: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut total = Lines::new();
    for (sku, kind, delta) in movements {
        *total.entry(sku.clone()).or_default() += delta;
        by_kind.insert((sku, kind), delta);
    }
    let adjustments: Lines =
        sqlx::query_as("SELECT sku, sum(delta)::bigint FROM adjustments GROUP BY sku")
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let committed = model.committed();
    for spec in &run.skus {
        let s = &spec.sku;
        let kind = |k: &str| {
            by_kind
                .get(&(s.clone(), k.to_owned()))
                .copied()
                .unwrap_or(0)
        };
        let adjusted = model.adjusted.get(s).copied().unwrap_or(0);
        let restocked = model.restocked.get(s).copied().unwrap_or(0);
        let sold = committed.get(s).copied().unwrap_or(0);
        let persisted = on_hand.get(s).copied();
        check!(
            run,
            persisted == Some(live.skus[s].on_hand),
            "{label}: invariant 3 (Postgres): {s} skus.on_hand {persisted:?}, Redis on_hand {}",
            live.skus[s].on_hand
        );
        check!(
            run,
            total.get(s).copied() == persisted,
            "{label}: {s}: stock_movements sum to {:?}, skus.on_hand is {persisted:?}",
            total.get(s)
        );
        let ledger = (
            kind("created"),
            kind("adjustment"),
            kind("return"),
            -kind("commit"),
            kind("repair"),
        );
        check!(
            run,
            ledger == (spec.initial, adjusted, restocked, sold, 0),
            "{label}: {s}: ledger (created, adjustments, returns, commits, repairs) = {ledger:?}, \
             clients were told {:?}",
            (spec.initial, adjusted, restocked, sold, 0)
        );
        check!(
            run,
            adjustments.get(s).copied().unwrap_or(0) == adjusted,
            "{label}: {s}: adjustments table sums to {:?}, acknowledged {adjusted}",
            adjustments.get(s)
        );
        // Each allocation's share is its account's in the ledger.
        for (channel, (share, _)) in &live.skus[s].allocations {
            let account = format!("{s}@{channel}");
            check!(
                run,
                on_hand.get(&account) == Some(share),
                "{label}: {account}: ledger share {:?}, Redis {share}",
                on_hand.get(&account)
            );
        }
    }
    let twice: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT ref, sku, count(*) FROM stock_movements WHERE kind = 'commit'
         GROUP BY ref, sku HAVING count(*) > 1",
    )
    .fetch_all(db)
    .await
    .unwrap();
    check!(
        run,
        twice.is_empty(),
        "{label}: invariant 4: sales recorded twice: {twice:?}"
    );
    let orders: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT order_id, reservation_id, customer_id FROM orders")
            .fetch_all(db)
            .await
            .unwrap();
    let lines: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT order_id, sku, qty, returned_qty FROM order_lines")
            .fetch_all(db)
            .await
            .unwrap();
    let mut persisted: BTreeMap<String, (String, Option<String>, Lines, Lines)> = orders
        .into_iter()
        .map(|(o, r, c)| (o, (r, c, Lines::new(), Lines::new())))
        .collect();
    for (order_id, sku, qty, returned) in lines {
        let Some(o) = persisted.get_mut(&order_id) else {
            panic!(
                "[seed {}] {label}: order line of unknown order {order_id}",
                run.seed
            );
        };
        o.2.insert(sku.clone(), qty);
        if returned > 0 {
            o.3.insert(sku, returned);
        }
    }
    let told: BTreeSet<&String> = model.orders.keys().collect();
    let found: BTreeSet<&String> = persisted.keys().collect();
    check!(
        run,
        told == found,
        "{label}: invariant 5: acknowledged commits not in Postgres {:?}; orders nobody was told of {:?}",
        told.difference(&found).take(5).collect::<Vec<_>>(),
        found.difference(&told).take(5).collect::<Vec<_>>()
    );
    for (order_id, m) in &model.orders {
        let (reservation, customer, lines, returned) = &persisted[order_id];
        check!(
            run,
            *reservation == m.reservation
                && *customer == m.customer
                && *lines == m.lines
                && *returned == m.returned,
            "{label}: order {order_id} (acknowledged {}) in Postgres: {reservation} {customer:?} \
             lines {lines:?} returned {returned:?}; told {m:?}",
            if m.persisted { 201 } else { 202 }
        );
    }
}

/// Pauses the clients and checks every invariant.
async fn checkpoint(run: &Run, label: &str) {
    let _closed = run.gate.write().await;
    let started = Instant::now();
    let live = read_live(run).await;
    let model = run.model.lock().unwrap().clone();
    check_redis(run, &live, &model, label);
    wait_for_drain(run, label).await;
    check_postgres(run, &live, &model, label).await;
    println!(
        "[seed {}] {label}: {} holds, {} orders: invariants hold ({} ms)",
        run.seed,
        model.holds.len(),
        model.orders.len(),
        started.elapsed().as_millis()
    );
}

fn run_length() -> Duration {
    match std::env::var("STOCKHOLD_SOAK_SECONDS") {
        Ok(s) => Duration::from_secs(
            s.parse()
                .expect("STOCKHOLD_SOAK_SECONDS is a number of seconds"),
        ),
        Err(_) => DEFAULT_RUN,
    }
}

fn sku_specs(rng: &mut StdRng) -> Vec<SkuSpec> {
    (0..SKUS)
        .map(|i| {
            let (initial, backorder, limit) = match i % 10 {
                // Scarce: baskets compete for the last units.
                0 => (rng.gen_range(2..=8), 0, None),
                // Sold beyond stock up to the backorder limit.
                1 | 6 => (rng.gen_range(0..=6), rng.gen_range(4..=12), None),
                // Limited per customer.
                2 | 7 => (rng.gen_range(30..=120), 0, Some(rng.gen_range(2..=5))),
                _ => (rng.gen_range(50..=300), 0, None),
            };
            // Some SKUs set units aside for a channel (and keep some back).
            let (safety, allocations) = match i % 10 {
                3 => (
                    rng.gen_range(0..=3),
                    vec![("phone".to_owned(), rng.gen_range(2..=10))],
                ),
                7 => (1, vec![("phone".to_owned(), rng.gen_range(1..=5))]),
                8 => (
                    0,
                    vec![
                        ("web".to_owned(), rng.gen_range(2..=20)),
                        ("phone".to_owned(), rng.gen_range(2..=10)),
                    ],
                ),
                _ => (0, Vec::new()),
            };
            SkuSpec {
                sku: format!("R{i:02}"),
                initial,
                backorder,
                limit,
                safety,
                allocations,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_operations_from_many_clients_keep_every_invariant() {
    // Arrange
    let seed: u64 = match std::env::var("STOCKHOLD_TEST_SEED") {
        Ok(s) => s.parse().expect("STOCKHOLD_TEST_SEED is a u64"),
        Err(_) => rand::random(),
    };
    let length = run_length();
    println!("randomized: seed {seed} (replay with STOCKHOLD_TEST_SEED={seed}), {length:?}, {CLIENTS} clients");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut skus = sku_specs(&mut rng);
    skus.push(SkuSpec {
        sku: LATER.into(),
        initial: 10,
        backorder: 0,
        limit: None,
        safety: 0,
        allocations: Vec::new(),
    });
    let app = spawn_app().await;
    for spec in &skus {
        let mut body = json!({ "on_hand": spec.initial, "backorder_limit": spec.backorder });
        if let Some(limit) = spec.limit {
            body["per_customer_limit"] = json!(limit);
        }
        if spec.sku == LATER {
            body["sale_starts_at"] = json!("2099-01-01T00:00:00Z");
        }
        if !spec.allocations.is_empty() {
            body["safety_stock"] = json!(spec.safety);
            body["allocations"] = spec
                .allocations
                .iter()
                .map(|(c, n)| (c.clone(), json!(n)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let res = app.put_sku(&spec.sku, body).await;
        assert_eq!(
            res.status(),
            201,
            "seed {seed}: {}",
            res.text().await.unwrap()
        );
    }
    let run = Arc::new(Run {
        seed,
        app,
        skus,
        model: Mutex::new(Model::default()),
        gate: RwLock::new(()),
        violations: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let deadline = started + length;

    // Act: the clients, and a checker pausing them every CHECK_EVERY.
    let mut tasks = Vec::with_capacity(CLIENTS + 1);
    let checker = run.clone();
    tasks.push(tokio::spawn(async move {
        let mut rounds = 0;
        let most = length.as_secs() / CHECK_EVERY.as_secs() + 1;
        while rounds < most {
            tokio::time::sleep(CHECK_EVERY).await;
            if Instant::now() + Duration::from_millis(500) >= deadline {
                break;
            }
            rounds += 1;
            checkpoint(&checker, &format!("checkpoint {rounds}")).await;
        }
        rounds
    }));
    for no in 0..CLIENTS {
        let client = Client::new(run.clone(), no);
        tasks.push(tokio::spawn(client.drive(deadline, MAX_OPS_PER_CLIENT)));
    }
    let done = match try_join_all(tasks).await {
        Ok(done) => done,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let (checkpoints, operations) = (done[0], done[1..].iter().sum::<u64>());
    let ran = started.elapsed();

    // Assert: short holds run out within the promise, then every invariant.
    let last_short = run
        .model
        .lock()
        .unwrap()
        .holds
        .values()
        .filter(|h| h.told == Told::Held && h.expires_ms < now_ms() + 5_000)
        .map(|h| h.expires_ms)
        .max();
    if let Some(last) = last_short {
        let wait = (last + EXPIRY_PROMISE_MS + 200 - now_ms()).max(0) as u64;
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
    checkpoint(&run, "final").await;
    let res = run.app.reconcile(json!({})).await;
    let report: Value = res.json().await.unwrap();
    assert_eq!(
        report["drifted"],
        json!([]),
        "seed {seed}: final dry run found drift: {report}"
    );
    assert_eq!(report["checked"], run.skus.len(), "seed {seed}: {report}");
    // Releasing every hold still held leaves nothing held anywhere.
    let open: Vec<String> = run
        .model
        .lock()
        .unwrap()
        .holds
        .iter()
        .filter(|(_, h)| h.told == Told::Held)
        .map(|(id, _)| id.clone())
        .collect();
    for id in &open {
        let res = run.app.release(id).await;
        assert_eq!(res.status(), 200, "seed {seed}: release {id}");
    }
    for spec in &run.skus {
        let (_, held, _) = run.app.counts(&spec.sku).await;
        assert_eq!(
            held, 0,
            "seed {seed}: {} still held after every hold ended",
            spec.sku
        );
    }

    let model = run.model.lock().unwrap().clone();
    println!(
        "[seed {seed}] {operations} operations by {CLIENTS} clients in {:.1} s, {checkpoints} checkpoints + final; \
         {} holds, {} orders, {} units sold",
        ran.as_secs_f64(),
        model.holds.len(),
        model.orders.len(),
        model.committed().values().sum::<i64>()
    );
    for (op, n) in &model.ops {
        println!("  {op:<45} {n}");
    }
    let violations = run.violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "[seed {seed}; replay with STOCKHOLD_TEST_SEED={seed}] {} answers broke API.md, first ones:\n  {}",
        violations.len(),
        violations.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ")
    );
}
