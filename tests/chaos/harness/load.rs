//! The load generator: concurrent clients, each bounded in time and in
//! rounds, that reserve random baskets and commit, release or abandon them,
//! tolerating refused connections and 503s. Every write carries an
//! Idempotency-Key, and a write whose answer was lost (or that was answered
//! 503, or "still in progress") is sent again with the same key, as a
//! careful client does. Every commit attempt is kept with what the client
//! learnt about it, for the invariant checker; every reserve that succeeded
//! is timed, so a test can tell how soon writes resumed after a fault.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Well-known development keys (README).
pub const STOREFRONT: &str = "dev-storefront-key";
/// The admin development key.
pub const ADMIN: &str = "dev-admin-key";

/// Longest a client keeps retrying one commit whose outcome it does not
/// know yet (connection died, 503) before calling it unknown.
const COMMIT_PATIENCE: Duration = Duration::from_secs(8);
const COMMIT_ATTEMPTS: usize = 12;
/// Attempts of a reserve (same key) before the client moves on.
const RESERVE_ATTEMPTS: usize = 4;

/// The SKUs a test sets up: a few hot ones with little stock, which sell
/// out under load (the edge where a double sale would show), and plenty of
/// deep ones that keep baskets succeeding.
#[derive(Clone, Debug)]
pub struct Catalogue {
    /// (SKU, initial on_hand).
    pub skus: Vec<(String, i64)>,
}

impl Catalogue {
    /// 2 hot SKUs of 300 units, 8 of 1 000 000.
    pub fn standard() -> Catalogue {
        let hot = (0..2).map(|i| (format!("HOT-{i}"), 300));
        let deep = (0..8).map(|i| (format!("DEEP-{i}"), 1_000_000));
        Catalogue {
            skus: hot.chain(deep).collect(),
        }
    }

    /// Creates every SKU through the API of the service at `base`.
    pub async fn create(&self, base: &str) {
        let client = reqwest::Client::new();
        for (sku, on_hand) in &self.skus {
            let res = client
                .put(format!("{base}/v1/skus/{sku}"))
                .bearer_auth(ADMIN)
                .json(&json!({ "on_hand": on_hand }))
                .send()
                .await
                .expect("PUT /v1/skus");
            let status = res.status();
            assert_eq!(status, 201, "create {sku}: {}", res.text().await.unwrap());
        }
    }

    /// A SKU with stock to spare, for a probe that holds and releases.
    pub fn probe_sku(&self) -> String {
        self.deep()[0].to_owned()
    }

    fn hot(&self) -> Vec<&str> {
        self.names().filter(|s| s.starts_with("HOT")).collect()
    }

    fn deep(&self) -> Vec<&str> {
        self.names().filter(|s| !s.starts_with("HOT")).collect()
    }

    /// The SKU names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.skus.iter().map(|(s, _)| s.as_str())
    }
}

/// How much load, for how long, against what.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Concurrent clients.
    pub clients: usize,
    /// Clients start no new round after this.
    pub duration: Duration,
    /// Nor after this many rounds each.
    pub max_rounds: usize,
    /// What they buy.
    pub catalogue: Catalogue,
    /// Prefix of the order ids, so orders are traceable to a test.
    pub tag: String,
}

impl LoadPlan {
    /// `clients` clients for `duration` over the standard catalogue.
    pub fn new(tag: &str, clients: usize, duration: Duration, catalogue: &Catalogue) -> LoadPlan {
        LoadPlan {
            clients,
            duration,
            max_rounds: 2_000,
            catalogue: catalogue.clone(),
            tag: tag.to_owned(),
        }
    }
}

/// What the client learnt about one commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// 201, 202, or 200 (a retry found it committed): the sale is made.
    Acked(u16),
    /// A definite refusal (4xx, or only 503s, which promise nothing changed).
    Rejected(u16),
    /// Some attempt went unanswered and none answered since: it may or may
    /// not have happened.
    Unknown,
}

/// One commit a client attempted.
#[derive(Clone, Debug)]
pub struct CommitRecord {
    /// The order id the client chose.
    pub order_id: String,
    /// The reservation committed.
    pub reservation_id: String,
    /// The basket held, sorted by SKU.
    pub lines: Vec<(String, i64)>,
    /// What the client learnt.
    pub outcome: CommitOutcome,
    /// HTTP attempts made.
    pub attempts: usize,
}

/// Counters the test reads while the load runs.
#[derive(Default, Debug)]
pub struct Stats {
    /// HTTP requests sent.
    pub requests: AtomicU64,
    /// Commit requests sent and not answered yet.
    pub commits_in_flight: AtomicI64,
    /// Commits acknowledged so far.
    pub acked: AtomicU64,
    /// Commits answered 202 so far.
    pub accepted: AtomicU64,
    /// When each reserve answered 201 came back.
    reserved_at: Mutex<Vec<Instant>>,
}

impl Stats {
    /// Waits (at most `within`) until at least `n` commits are in flight;
    /// returns how many are.
    pub async fn commits_in_flight_at_least(&self, n: i64, within: Duration) -> i64 {
        let end = Instant::now() + within;
        loop {
            let now = self.commits_in_flight.load(Ordering::SeqCst);
            if now >= n || Instant::now() >= end {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits (at most `within`) for a reserve answered 201 after `since`;
    /// how long after `since` the first one came back.
    pub async fn reserve_succeeded_after(
        &self,
        since: Instant,
        within: Duration,
    ) -> Option<Duration> {
        let end = Instant::now() + within;
        loop {
            let first = self
                .reserved_at
                .lock()
                .unwrap()
                .iter()
                .filter(|t| **t >= since)
                .min()
                .copied();
            if let Some(t) = first {
                return Some(t - since);
            }
            if Instant::now() >= end {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Load under way.
pub struct Load {
    stats: Arc<Stats>,
    handle: JoinHandle<LoadOutcome>,
}

/// Everything the load did.
#[derive(Debug, Default)]
pub struct LoadOutcome {
    /// Clients run.
    pub clients: usize,
    /// From start until the last client finished.
    pub duration: Duration,
    /// HTTP requests sent.
    pub requests: u64,
    /// Rounds (reserve, then commit, release or abandon).
    pub rounds: u64,
    /// Reservations answered 201.
    pub reserved: u64,
    /// Every commit attempted.
    pub commits: Vec<CommitRecord>,
    /// Availability items read under load that were negative or missing.
    pub negative_available: Vec<String>,
    /// Answers by operation and status (`commit 202`, `reserve lost`, …).
    pub tally: BTreeMap<String, u64>,
}

/// Commits by outcome.
pub struct CommitCounts {
    /// Answered 201.
    pub created: usize,
    /// Answered 202.
    pub accepted: usize,
    /// Answered 200 on a retry.
    pub repeated: usize,
    /// Refused for good.
    pub rejected: usize,
    /// Outcome not known to the client.
    pub unknown: usize,
}

impl CommitCounts {
    /// Acknowledged in all.
    pub fn acked(&self) -> usize {
        self.created + self.accepted + self.repeated
    }
}

impl LoadOutcome {
    /// Commits by outcome.
    pub fn commit_counts(&self) -> CommitCounts {
        let mut c = CommitCounts {
            created: 0,
            accepted: 0,
            repeated: 0,
            rejected: 0,
            unknown: 0,
        };
        for r in &self.commits {
            match r.outcome {
                CommitOutcome::Acked(201) => c.created += 1,
                CommitOutcome::Acked(202) => c.accepted += 1,
                CommitOutcome::Acked(_) => c.repeated += 1,
                CommitOutcome::Rejected(_) => c.rejected += 1,
                CommitOutcome::Unknown => c.unknown += 1,
            }
        }
        c
    }

    /// The tally on one line.
    pub fn tally_line(&self) -> String {
        let parts: Vec<String> = self
            .tally
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

impl Load {
    /// Starts `plan.clients` clients spreading their requests over
    /// `endpoints` (base URLs); a client whose endpoint stops answering
    /// moves to the next one.
    pub fn start(plan: LoadPlan, endpoints: Vec<String>) -> Load {
        let stats = Arc::new(Stats::default());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let shared = Arc::new(Shared {
            http,
            endpoints,
            until: Instant::now() + plan.duration,
            stats: stats.clone(),
            plan,
        });
        let handle = tokio::spawn(run(shared));
        Load { stats, handle }
    }

    /// Live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Waits for every client to finish.
    pub async fn finish(self) -> LoadOutcome {
        self.handle.await.expect("the load generator panicked")
    }
}

struct Shared {
    http: reqwest::Client,
    endpoints: Vec<String>,
    until: Instant,
    stats: Arc<Stats>,
    plan: LoadPlan,
}

async fn run(shared: Arc<Shared>) -> LoadOutcome {
    let started = Instant::now();
    let clients: Vec<JoinHandle<Client>> = (0..shared.plan.clients)
        .map(|idx| {
            let client = Client::new(idx, shared.clone());
            tokio::spawn(client.run())
        })
        .collect();
    let mut outcome = LoadOutcome {
        clients: shared.plan.clients,
        ..LoadOutcome::default()
    };
    for handle in clients {
        let client = handle.await.expect("a load client panicked");
        outcome.rounds += client.rounds as u64;
        outcome.reserved += client.reserved;
        outcome.commits.extend(client.commits);
        outcome.negative_available.extend(client.negative);
        for (k, v) in client.tally {
            *outcome.tally.entry(k).or_default() += v;
        }
    }
    outcome.requests = shared.stats.requests.load(Ordering::SeqCst);
    outcome.duration = started.elapsed();
    outcome
}

/// An answer, or none.
enum Answer {
    Status(u16, Value),
    Lost,
}

struct Client {
    idx: usize,
    shared: Arc<Shared>,
    rng: StdRng,
    /// The endpoint it talks to; moves on when that one stops answering.
    home: usize,
    rounds: usize,
    reserved: u64,
    commits: Vec<CommitRecord>,
    negative: Vec<String>,
    tally: BTreeMap<String, u64>,
}

impl Client {
    fn new(idx: usize, shared: Arc<Shared>) -> Client {
        Client {
            idx,
            home: idx % shared.endpoints.len(),
            rng: StdRng::seed_from_u64(0x5EED ^ idx as u64),
            shared,
            rounds: 0,
            reserved: 0,
            commits: Vec::new(),
            negative: Vec::new(),
            tally: BTreeMap::new(),
        }
    }

    async fn run(mut self) -> Client {
        while Instant::now() < self.shared.until && self.rounds < self.shared.plan.max_rounds {
            self.rounds += 1;
            self.round().await;
        }
        self
    }

    /// Reserve a basket, then commit (70 %), release (15 %) or abandon it
    /// to expiry (15 %); now and then read availability.
    async fn round(&mut self) {
        if self.rng.gen_ratio(1, 5) {
            let query: Vec<String> = self
                .basket()
                .iter()
                .map(|(s, _)| format!("sku={s}"))
                .collect();
            let path = format!("/v1/availability?{}", query.join("&"));
            if let Answer::Status(200, body) = self
                .call("availability", Method::GET, &path, None, None)
                .await
            {
                let items = body["items"].as_array().cloned().unwrap_or_default();
                for item in items {
                    if item["available"].as_i64().is_none_or(|n| n < 0) {
                        self.negative.push(item.to_string());
                    }
                }
            }
        }
        let lines = self.basket();
        let body = json!({
            "lines": lines.iter().map(|(s, q)| json!({ "sku": s, "qty": q })).collect::<Vec<_>>(),
            "ttl_seconds": self.rng.gen_range(2..=5),
            "customer_id": format!("c-{}", self.idx),
            "channel": "chaos",
        });
        let key = self.key("rsv");
        let mut id = None;
        for attempt in 1..=RESERVE_ATTEMPTS {
            match self
                .call(
                    "reserve",
                    Method::POST,
                    "/v1/reservations",
                    Some(&key),
                    Some(body.clone()),
                )
                .await
            {
                Answer::Status(201, body) => {
                    self.shared
                        .stats
                        .reserved_at
                        .lock()
                        .unwrap()
                        .push(Instant::now());
                    id = body["id"].as_str().map(str::to_owned);
                    break;
                }
                Answer::Status(409, body) if body["code"] != "idempotency_conflict" => break,
                // Lost, 503, "still in progress": the same again, a little later.
                _ => self.back_off(attempt).await,
            }
        }
        let Some(id) = id else { return };
        self.reserved += 1;
        match self.rng.gen_range(0..100) {
            0..=69 => self.commit(id, lines).await,
            70..=84 => {
                let path = format!("/v1/reservations/{id}");
                let key = self.key("rel");
                for attempt in 1..=2 {
                    match self
                        .call("release", Method::DELETE, &path, Some(&key), None)
                        .await
                    {
                        Answer::Status(s, _) if s < 500 => break,
                        _ => self.back_off(attempt).await,
                    }
                }
            }
            _ => {} // abandoned: the reaper expires it
        }
    }

    /// An idempotency key for one write of this client's current round.
    fn key(&self, op: &str) -> String {
        format!("{op}-{}-{}-{}", self.shared.plan.tag, self.idx, self.rounds)
    }

    /// 1 to 4 distinct SKUs, a hot one in a quarter of the baskets, sorted.
    fn basket(&mut self) -> Vec<(String, i64)> {
        let catalogue = &self.shared.plan.catalogue;
        let (hot, deep) = (catalogue.hot(), catalogue.deep());
        let mut skus: Vec<&str> = Vec::new();
        if self.rng.gen_ratio(1, 4) {
            skus.push(hot[self.rng.gen_range(0..hot.len())]);
        }
        let want = self.rng.gen_range(1..=4);
        while skus.len() < want {
            let sku = deep[self.rng.gen_range(0..deep.len())];
            if !skus.contains(&sku) {
                skus.push(sku);
            }
        }
        skus.sort_unstable();
        skus.into_iter()
            .map(|s| (s.to_owned(), self.rng.gen_range(1..=3)))
            .collect()
    }

    /// Commits with a fixed order id, retrying (idempotent: a retry of a
    /// commit that was made answers 200) while the outcome is not known.
    async fn commit(&mut self, reservation_id: String, lines: Vec<(String, i64)>) {
        let order_id = format!("ord-{}-{}-{}", self.shared.plan.tag, self.idx, self.rounds);
        let path = format!("/v1/reservations/{reservation_id}/commit");
        let body = json!({ "order_id": order_id, "payment_ref": "chaos" });
        let key = self.key("cmt");
        let started = Instant::now();
        let mut unanswered = false;
        let mut attempts = 0;
        let stats = self.shared.stats.clone();
        let outcome = loop {
            attempts += 1;
            stats.commits_in_flight.fetch_add(1, Ordering::SeqCst);
            let answer = self
                .call(
                    "commit",
                    Method::POST,
                    &path,
                    Some(&key),
                    Some(body.clone()),
                )
                .await;
            stats.commits_in_flight.fetch_sub(1, Ordering::SeqCst);
            match answer {
                Answer::Status(s @ 200..=202, _) => break CommitOutcome::Acked(s),
                // Sent, maybe made: only a later answer tells.
                Answer::Status(503, body) if body["code"] == "outcome_unknown" => unanswered = true,
                Answer::Status(503, _) => {}
                // The same commit still in flight (on an instance that died,
                // say): ask again.
                Answer::Status(409, body) if body["code"] == "idempotency_conflict" => {
                    unanswered = true
                }
                // Any other 5xx says nothing about what happened.
                Answer::Status(s, _) if s >= 500 => unanswered = true,
                Answer::Status(s, _) => break CommitOutcome::Rejected(s),
                Answer::Lost => unanswered = true,
            }
            if attempts >= COMMIT_ATTEMPTS || started.elapsed() >= COMMIT_PATIENCE {
                break if unanswered {
                    CommitOutcome::Unknown
                } else {
                    CommitOutcome::Rejected(503)
                };
            }
            self.back_off(attempts).await;
        };
        match outcome {
            CommitOutcome::Acked(s) => {
                stats.acked.fetch_add(1, Ordering::SeqCst);
                if s == 202 {
                    stats.accepted.fetch_add(1, Ordering::SeqCst);
                }
            }
            CommitOutcome::Unknown => self.count("commit", "unknown in the end"),
            CommitOutcome::Rejected(_) => {}
        }
        self.commits.push(CommitRecord {
            order_id,
            reservation_id,
            lines,
            outcome,
            attempts,
        });
    }

    /// One HTTP request to the client's endpoint; an unanswered one moves
    /// the client on to the next endpoint.
    async fn call(
        &mut self,
        op: &str,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let base = &self.shared.endpoints[self.home];
        self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self
            .shared
            .http
            .request(method, format!("{base}{path}"))
            .bearer_auth(STOREFRONT);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        match req.send().await {
            Ok(res) => {
                let status = res.status().as_u16();
                self.count(op, &status.to_string());
                // The status line is the answer; a body cut off after it
                // still tells what happened.
                let body = res.json::<Value>().await.unwrap_or(Value::Null);
                Answer::Status(status, body)
            }
            Err(e) => {
                let why = if e.is_connect() {
                    "refused"
                } else if e.is_timeout() {
                    "timeout"
                } else {
                    "lost"
                };
                self.count(op, why);
                self.home = (self.home + 1) % self.shared.endpoints.len();
                Answer::Lost
            }
        }
    }

    fn count(&mut self, op: &str, what: &str) {
        *self.tally.entry(format!("{op} {what}")).or_default() += 1;
    }

    /// Sleeps a little longer each attempt, with jitter, so that 200
    /// clients do not hammer a service that is down.
    async fn back_off(&mut self, attempt: usize) {
        let base = 100 * attempt.min(8) as u64;
        let ms = base + self.rng.gen_range(0..=base);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// A shopper arriving every 20 ms while the fault lasts, independent of the
/// load's clients (which may all be waiting on slow commits): holds one unit
/// of `sku` and releases it. Returns when each hold succeeded.
pub fn probe_reserves(base: String, sku: String, duration: Duration) -> JoinHandle<Vec<Instant>> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let end = Instant::now() + duration;
        let mut held = Vec::new();
        while Instant::now() < end {
            let res = client
                .post(format!("{base}/v1/reservations"))
                .bearer_auth(STOREFRONT)
                .json(&json!({ "lines": [{ "sku": sku, "qty": 1 }], "ttl_seconds": 5 }))
                .send()
                .await;
            if let Ok(res) = res {
                if res.status() == 201 {
                    held.push(Instant::now());
                    if let Ok(body) = res.json::<serde_json::Value>().await {
                        if let Some(id) = body["id"].as_str() {
                            // Best effort: the hold expires by itself otherwise.
                            let _ = client
                                .delete(format!("{base}/v1/reservations/{id}"))
                                .bearer_auth(STOREFRONT)
                                .send()
                                .await;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        held
    })
}

/// The longest stretch between `from` and `to` without one of `times`.
pub fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut times: Vec<Instant> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t <= to)
        .collect();
    times.sort();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in times.into_iter().chain(std::iter::once(to)) {
        longest = longest.max(t - last);
        last = t;
    }
    longest
}

/// What a probe of one SKU saw: when each hold succeeded, and how the
/// others failed (`503 unavailable`, `500`, `timeout`, …).
#[derive(Debug, Default)]
pub struct ProbeOutcome {
    /// When each hold answered 201 came back.
    pub held: Vec<Instant>,
    /// Failed attempts by status and error code, or transport error.
    pub failures: BTreeMap<String, u64>,
}

/// `probe_reserves` for each of `skus` at once, one shopper per SKU every
/// 50 ms, recording failures too; the outcome per SKU.
pub fn probe_each(
    base: String,
    skus: Vec<String>,
    duration: Duration,
) -> JoinHandle<BTreeMap<String, ProbeOutcome>> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let end = Instant::now() + duration;
        let probes: Vec<_> = skus
            .into_iter()
            .map(|sku| {
                let (client, base) = (client.clone(), base.clone());
                tokio::spawn(async move {
                    let mut out = ProbeOutcome::default();
                    while Instant::now() < end {
                        let res = client
                            .post(format!("{base}/v1/reservations"))
                            .bearer_auth(STOREFRONT)
                            .json(&json!({ "lines": [{ "sku": sku, "qty": 1 }], "ttl_seconds": 5 }))
                            .send()
                            .await;
                        match res {
                            Ok(res) if res.status() == 201 => {
                                out.held.push(Instant::now());
                                let body = res.json::<Value>().await.unwrap_or(Value::Null);
                                if let Some(id) = body["id"].as_str() {
                                    // Best effort: the hold expires by itself otherwise.
                                    let _ = client
                                        .delete(format!("{base}/v1/reservations/{id}"))
                                        .bearer_auth(STOREFRONT)
                                        .send()
                                        .await;
                                }
                            }
                            Ok(res) => {
                                let status = res.status().as_u16();
                                let body = res.json::<Value>().await.unwrap_or(Value::Null);
                                let code = body["code"].as_str().unwrap_or("-");
                                *out.failures.entry(format!("{status} {code}")).or_default() += 1;
                            }
                            Err(e) => {
                                let why = if e.is_timeout() { "timeout" } else { "lost" };
                                *out.failures.entry(why.to_owned()).or_default() += 1;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    (sku, out)
                })
            })
            .collect();
        let mut all = BTreeMap::new();
        for p in probes {
            let (sku, out) = p.await.expect("a probe panicked");
            all.insert(sku, out);
        }
        all
    })
}

/// The longest stretch between `from` and `to` in which some SKU of
/// `skus` held nothing, with that SKU; and the failures of their probes.
pub fn longest_gap_of(
    probes: &BTreeMap<String, ProbeOutcome>,
    skus: &[String],
    from: Instant,
    to: Instant,
) -> (Duration, String, BTreeMap<String, u64>) {
    let mut worst = (Duration::ZERO, String::new());
    let mut failures = BTreeMap::new();
    for sku in skus {
        let Some(p) = probes.get(sku) else { continue };
        let gap = longest_gap(&p.held, from, to);
        if gap > worst.0 {
            worst = (gap, sku.clone());
        }
        for (k, v) in &p.failures {
            *failures.entry(k.clone()).or_default() += v;
        }
    }
    (worst.0, worst.1, failures)
}
