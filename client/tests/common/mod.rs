//! `spawn_app()`: stockhold in-process on port 0 with its own Postgres
//! database and Redis key prefix (the part of `tests/api/helpers.rs` these
//! tests need), and typed clients for it.

#![allow(dead_code)] // each test binary uses its own part of this

use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;
use stockhold::configuration::get_configuration;
use stockhold::startup::Application;
use stockhold_client::{Client, PutSku};
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "dev-admin-key";
pub const STOREFRONT: &str = "dev-storefront-key";
pub const CALLCENTRE: &str = "dev-callcentre-key";

/// A running stockhold; stops when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A client with the admin key.
    pub admin: Client,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// A client with `key`.
    pub fn client(&self, key: &str) -> Client {
        self.admin.with_api_key(key)
    }

    /// Sets up `sku` with `on_hand` units, asserting it is new.
    pub async fn create_sku(&self, sku: &str, on_hand: i64) {
        let put = self
            .admin
            .put_sku(sku, &PutSku::create(on_hand))
            .await
            .expect("SKU set up");
        assert!(put.created, "{sku} existed already");
    }
}

fn test_redis_url() -> String {
    std::env::var("STOCKHOLD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6381/".into())
}

fn test_admin_database_url() -> String {
    std::env::var("STOCKHOLD_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://stockhold@127.0.0.1:5434/postgres".into())
}

async fn create_database(name: &str) -> String {
    let admin = test_admin_database_url();
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("test Postgres is reachable (scripts/services.sh up test starts it)");
    conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
        .await
        .expect("create test database");
    let base = admin.rsplit_once('/').expect("database url has a path").0;
    format!("{base}/{name}")
}

/// Starts stockhold and waits until `/readyz` says it is ready.
pub async fn spawn_app() -> TestApp {
    let mut settings = get_configuration().expect("configuration loads");
    let id = uuid::Uuid::new_v4().simple().to_string();
    settings.application.host = "127.0.0.1".into();
    settings.application.port = 0;
    settings.application.workers = 2;
    settings.application.shutdown_timeout_seconds = 5;
    settings.redis.url = test_redis_url();
    settings.redis.key_prefix = format!("c{id}");
    settings.database.url = create_database(&format!("client_{id}")).await;
    settings.database.max_connections = 5;
    settings.telemetry.filter = "warn".into();

    let shutdown = CancellationToken::new();
    let app = Application::build(settings, shutdown.clone())
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let admin = Client::new(&address, ADMIN).expect("client");
    let test_app = TestApp {
        address,
        admin,
        shutdown,
    };
    wait_until_ready(&test_app.admin).await;
    test_app
}

async fn wait_until_ready(client: &Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match client.readyz().await {
            Ok(r) if r.ready => return,
            other if tokio::time::Instant::now() > deadline => {
                panic!("stockhold not ready after 30 s: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
