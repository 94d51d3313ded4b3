//! `spawn_app()`: a stockhold on port 0 with its own Postgres database and
//! its own Redis key prefix, and a `TestApp` with one method per endpoint.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::time::Duration;
use stockhold::configuration::{get_configuration, Settings};
use stockhold::service::Stock;
use stockhold::startup::Application;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "dev-admin-key";
pub const STOREFRONT: &str = "dev-storefront-key";
pub const CALLCENTRE: &str = "dev-callcentre-key";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub stock: Stock,
    pub settings: Settings,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn test_redis_url() -> String {
    std::env::var("STOCKHOLD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6381/".into())
}

fn test_admin_database_url() -> String {
    std::env::var("STOCKHOLD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stockhold@127.0.0.1:5434/postgres".into())
}

/// Partitions of the live state the tests run with: 1 (the default of the
/// service) unless STOCKHOLD_TEST_PARTITIONS says otherwise; scripts/test.sh
/// runs the suite with several too, so baskets span partitions.
pub fn test_partitions() -> u16 {
    std::env::var("STOCKHOLD_TEST_PARTITIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Whether the tests run against a Redis Cluster: STOCKHOLD_TEST_REDIS_CLUSTER=1,
/// with STOCKHOLD_TEST_REDIS_URL listing seed nodes (comma separated), as
/// scripts/test.sh sets them for its cluster run.
pub fn test_cluster() -> bool {
    std::env::var("STOCKHOLD_TEST_REDIS_CLUSTER").is_ok_and(|v| v == "1" || v == "true")
}

/// Points a test's app at a Redis server of its own (one it restarts,
/// slows down or empties), not at the shared test Redis or cluster.
pub fn own_redis(settings: &mut Settings, url: String) {
    settings.redis.url = url;
    settings.redis.cluster = false;
}

/// A connection to the test's Redis, a single server or a cluster (where
/// each command goes to the node of its key's slot).
pub enum RedisConn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for RedisConn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Settings for one isolated test: own database, own key prefix, port 0.
pub async fn test_settings() -> Settings {
    let mut settings = get_configuration().expect("configuration loads");
    let id = uuid::Uuid::new_v4().simple().to_string();
    settings.application.host = "127.0.0.1".into();
    settings.application.port = 0;
    settings.application.workers = 2;
    settings.application.shutdown_timeout_seconds = 5;
    settings.redis.url = test_redis_url();
    settings.redis.cluster = test_cluster();
    settings.redis.key_prefix = format!("t{id}");
    settings.redis.partitions = test_partitions();
    settings.database.url = create_database(&format!("test_{id}")).await;
    settings.database.max_connections = 10;
    settings.telemetry.filter = "warn".into();
    settings
}

async fn create_database(name: &str) -> String {
    let admin = test_admin_database_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("test Postgres is reachable (scripts/test.sh starts it)");
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').expect("database url has a path").0;
    format!("{base}/{name}")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings().await;
    change(&mut settings);
    spawn_app_on(settings).await
}

/// An app on exactly these settings: a second instance on the same
/// database and key prefix, or one started again after another stopped.
pub async fn spawn_app_on(settings: Settings) -> TestApp {
    let shutdown = CancellationToken::new();
    let app = Application::build(settings.clone(), shutdown.clone())
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let stock = app.stock().clone();
    let server = Some(tokio::spawn(app.run_until_stopped()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestApp {
        address,
        client,
        stock,
        settings,
        shutdown,
        server,
    }
}

impl TestApp {
    /// Sends the shutdown signal (as SIGTERM would) without waiting.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits for the server and background tasks to stop.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        match self.server.take() {
            Some(server) => server.await.expect("server task"),
            None => Ok(()),
        }
    }

    pub fn db(&self) -> &PgPool {
        self.stock.ledger.pool()
    }

    /// A connection to the app's Redis (or cluster).
    pub async fn redis(&self) -> RedisConn {
        let url = self.settings.redis.url.as_str();
        if self.settings.redis.cluster {
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let client = redis::cluster::ClusterClient::new(nodes).unwrap();
            RedisConn::Cluster(client.get_async_connection().await.unwrap())
        } else {
            let client = redis::Client::open(url).unwrap();
            RedisConn::Single(client.get_multiplexed_async_connection().await.unwrap())
        }
    }

    /// Every key matching `pattern`, from every master of a cluster.
    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let url = self.settings.redis.url.as_str();
        let mut servers = Vec::new();
        if self.settings.redis.cluster {
            let seed = url.split(',').next().unwrap().trim();
            let mut conn = redis::Client::open(seed)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await
                .unwrap();
            for line in nodes.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                if f.len() > 8 && f[2].contains("master") && !f[2].contains("fail") {
                    let addr = f[1].split('@').next().unwrap();
                    servers.push(format!("redis://{addr}/"));
                }
            }
        } else {
            servers.push(url.to_owned());
        }
        let mut keys = Vec::new();
        for server in servers {
            let mut conn = redis::Client::open(server.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let mut cursor: u64 = 0;
            for _ in 0..100_000 {
                let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                keys.extend(batch);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// A storefront request with an `Idempotency-Key`.
    pub async fn keyed(
        &self,
        method: Method,
        path: &str,
        idempotency_key: &str,
        body: Value,
    ) -> Response {
        self.client
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(STOREFRONT)
            .header("Idempotency-Key", idempotency_key)
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// Any request: method, path, key (None: no Authorization), JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request sent")
    }

    pub async fn put_sku(&self, sku: &str, body: Value) -> Response {
        self.request(
            Method::PUT,
            &format!("/v1/skus/{sku}"),
            Some(ADMIN),
            Some(body),
        )
        .await
    }

    /// Sets up a SKU with `on_hand` units, asserting it was created.
    pub async fn create_sku(&self, sku: &str, on_hand: i64) {
        let res = self.put_sku(sku, json!({ "on_hand": on_hand })).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
    }

    pub async fn get_sku(&self, sku: &str) -> Response {
        self.request(
            Method::GET,
            &format!("/v1/skus/{sku}"),
            Some(STOREFRONT),
            None,
        )
        .await
    }

    /// The SKU view, asserting it exists.
    pub async fn sku(&self, sku: &str) -> Value {
        let res = self.get_sku(sku).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    pub async fn availability(&self, skus: &[&str]) -> Response {
        let query: Vec<String> = skus.iter().map(|s| format!("sku={s}")).collect();
        self.request(
            Method::GET,
            &format!("/v1/availability?{}", query.join("&")),
            Some(STOREFRONT),
            None,
        )
        .await
    }

    pub async fn reserve(&self, body: Value) -> Response {
        self.request(
            Method::POST,
            "/v1/reservations",
            Some(STOREFRONT),
            Some(body),
        )
        .await
    }

    /// Holds `lines` (sku, qty) and returns the reservation id, asserting 201.
    pub async fn hold(&self, lines: &[(&str, i64)]) -> String {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(s, q)| json!({ "sku": s, "qty": q }))
            .collect();
        let res = self.reserve(json!({ "lines": lines })).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn get_reservation(&self, id: &str) -> Response {
        self.request(
            Method::GET,
            &format!("/v1/reservations/{id}"),
            Some(STOREFRONT),
            None,
        )
        .await
    }

    pub async fn patch_reservation(&self, id: &str, body: Value) -> Response {
        self.request(
            Method::PATCH,
            &format!("/v1/reservations/{id}"),
            Some(STOREFRONT),
            Some(body),
        )
        .await
    }

    pub async fn release(&self, id: &str) -> Response {
        self.request(
            Method::DELETE,
            &format!("/v1/reservations/{id}"),
            Some(STOREFRONT),
            None,
        )
        .await
    }

    pub async fn commit(&self, id: &str, body: Value) -> Response {
        self.request(
            Method::POST,
            &format!("/v1/reservations/{id}/commit"),
            Some(STOREFRONT),
            Some(body),
        )
        .await
    }

    pub async fn get_order(&self, order_id: &str) -> Response {
        self.request(
            Method::GET,
            &format!("/v1/orders/{order_id}"),
            Some(STOREFRONT),
            None,
        )
        .await
    }

    /// (on_hand, held, available) of a SKU.
    pub async fn counts(&self, sku: &str) -> (i64, i64, i64) {
        let v = self.sku(sku).await;
        (
            v["on_hand"].as_i64().unwrap(),
            v["held"].as_i64().unwrap(),
            v["available"].as_i64().unwrap(),
        )
    }

    /// Polls `check` until it holds or `deadline` passes.
    pub async fn eventually<F, Fut>(&self, deadline: Duration, mut check: F) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if check().await {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Asserts a problem+json answer with `status` and `code`; returns its body.
/// The JSON body of `res`, asserting its status.
pub async fn body_of(res: Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "unexpected status; body: {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

// Helpers for the ledger, adjustment, return and reconcile tests.
impl TestApp {
    /// `POST /v1/skus/{sku}/adjustments` as admin.
    pub async fn adjust(&self, sku: &str, body: Value) -> Response {
        self.request(
            Method::POST,
            &format!("/v1/skus/{sku}/adjustments"),
            Some(ADMIN),
            Some(body),
        )
        .await
    }

    /// `POST /v1/orders/{order_id}/returns` as admin.
    pub async fn return_order(&self, order_id: &str, body: Value) -> Response {
        self.request(
            Method::POST,
            &format!("/v1/orders/{order_id}/returns"),
            Some(ADMIN),
            Some(body),
        )
        .await
    }

    /// `POST /v1/admin/reconcile` as admin.
    pub async fn reconcile(&self, body: Value) -> Response {
        self.request(Method::POST, "/v1/admin/reconcile", Some(ADMIN), Some(body))
            .await
    }

    /// `GET /v1/skus/{sku}/ledger?{query}` as admin (`query` without the `?`).
    pub async fn ledger(&self, sku: &str, query: &str) -> Response {
        let path = if query.is_empty() {
            format!("/v1/skus/{sku}/ledger")
        } else {
            format!("/v1/skus/{sku}/ledger?{query}")
        };
        self.request(Method::GET, &path, Some(ADMIN), None).await
    }

    /// Holds `lines` (sku, qty) and commits them as `order_id`, asserting
    /// 201; returns the order.
    pub async fn commit_order(&self, order_id: &str, lines: &[(&str, i64)]) -> Value {
        let id = self.hold(lines).await;
        let res = self.commit(&id, json!({ "order_id": order_id })).await;
        let status = res.status();
        let text = res.text().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "commit {order_id}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// `on_hand` of `sku` in the Postgres `skus` table.
    pub async fn persisted_on_hand(&self, sku: &str) -> Option<i64> {
        sqlx::query_scalar("SELECT on_hand FROM sku_stock WHERE sku = $1")
            .bind(sku)
            .fetch_optional(self.db())
            .await
            .unwrap()
    }

    /// The Redis key prefix of the partition of `sku` (see lua/common.lua).
    pub fn redis_base(&self, sku: &str) -> String {
        let keys = self.stock.engine.keys();
        let sku = stockhold::domain::Sku::parse(sku).expect("a valid SKU");
        keys.part(keys.of_sku(&sku)).base().to_owned()
    }

    /// Sets a SKU's live `on_hand` or `held` behind the service's back, the
    /// other one staying as it is (`held` is on_hand + backorder limit -
    /// available in Redis, see lua/common.lua).
    pub async fn tamper(&self, sku: &str, field: &str, value: i64) {
        let script = redis::Script::new(
            "local base, sku, field, v = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
             local a = tonumber(redis.call('HGET', base .. 'avail', sku))
             local oh = tonumber(redis.call('HGET', base .. 'onhand', sku))
             local bo = tonumber(redis.call('HGET', base .. 'bo', sku) or '0')
             local held = oh + bo - a
             if field == 'on_hand' then oh = v elseif field == 'held' then held = v
             else return redis.error_reply('unknown field') end
             redis.call('HSET', base .. 'onhand', sku, oh)
             redis.call('HSET', base .. 'avail', sku, oh + bo - held)
             return 1",
        );
        let mut conn = self.redis().await;
        let base = self.redis_base(sku);
        // The key routes the call to the partition's node on a cluster.
        let _: i64 = script
            .key(format!("{base}avail"))
            .arg(base)
            .arg(sku)
            .arg(field)
            .arg(value)
            .invoke_async(&mut conn)
            .await
            .unwrap();
    }

    /// A SKU's live `(on_hand, held)` straight from Redis.
    pub async fn live_counts(&self, sku: &str) -> (Option<i64>, Option<i64>) {
        let base = self.redis_base(sku);
        let mut conn = self.redis().await;
        let (avail, on_hand, bo): (Option<i64>, Option<i64>, Option<i64>) = redis::pipe()
            .atomic()
            .hget(format!("{base}avail"), sku)
            .hget(format!("{base}onhand"), sku)
            .hget(format!("{base}bo"), sku)
            .query_async(&mut conn)
            .await
            .unwrap();
        let held = avail.zip(on_hand).map(|(a, oh)| oh + bo.unwrap_or(0) - a);
        (on_hand, held)
    }

    /// Trims every event from the streams, as the retention window does.
    pub async fn trim_every_event(&self) {
        let engine = &self.stock.engine;
        for p in engine.partitions().all() {
            engine
                .trim_events(p, Duration::ZERO, 1_000_000)
                .await
                .unwrap();
        }
    }

    /// Deletes every key of this deployment from Redis, as a Redis that
    /// lost its data (the rebuild guard notices and rebuilds it).
    pub async fn lose_every_key(&self) {
        let mut redis = self.redis().await;
        let prefix = self.settings.redis.key_prefix.clone();
        for key in self.redis_keys(&format!("{prefix}:*")).await {
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap();
        }
    }

    /// Removes a SKU from Redis behind the service's back.
    pub async fn forget_sku(&self, sku: &str) {
        let base = self.redis_base(sku);
        let mut conn = self.redis().await;
        let _: () = redis::pipe()
            .atomic()
            .hdel(format!("{base}avail"), sku)
            .hdel(format!("{base}onhand"), sku)
            .hdel(format!("{base}bo"), sku)
            .hdel(format!("{base}rules"), sku)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}
