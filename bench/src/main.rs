//! stockhold-bench: measures stockhold on this machine and prints figures.
//!
//! - `http-reserve`: N-line baskets reserved over HTTP against a running
//!   stockhold (scripts/run.sh), for a bounded time and count.
//! - `scale`: a ledger of N SKUs in a fresh database; times the start-up
//!   rebuild of an empty Redis from it and a dry-run reconcile.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use rand::seq::index::sample;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use stockhold::configuration::get_configuration;
use stockhold::domain::ReconcileMode;
use stockhold::reconciler::Reconciler;
use stockhold::startup::connect;

#[derive(Parser)]
#[command(about = "Benchmarks for stockhold")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reserve baskets over HTTP against a running stockhold.
    HttpReserve {
        /// The service.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Admin key (sets up the SKUs).
        #[arg(long, default_value = "dev-admin-key")]
        admin_key: String,
        /// Key the baskets are reserved with.
        #[arg(long, default_value = "dev-storefront-key")]
        key: String,
        /// Lines per basket.
        #[arg(long, default_value_t = 60)]
        lines: usize,
        /// SKUs the baskets draw from (uniformly).
        #[arg(long, default_value_t = 10_000)]
        skus: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Stop after this many requests in all.
        #[arg(long, default_value_t = 1_000_000)]
        max_requests: u64,
    },
    /// Time the start-up rebuild and a dry-run reconcile over N SKUs.
    Scale {
        /// SKUs in the ledger.
        #[arg(long, default_value_t = 1_000_000)]
        skus: i64,
        /// Redis to rebuild into (a fresh key prefix is used and removed).
        #[arg(long, default_value = "redis://127.0.0.1:6380/")]
        redis_url: String,
        /// Postgres server (a fresh database is created and dropped).
        #[arg(long, default_value = "postgres://stockhold@127.0.0.1:5433/postgres")]
        database_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::HttpReserve {
            url,
            admin_key,
            key,
            lines,
            skus,
            concurrency,
            seconds,
            max_requests,
        } => {
            let run = HttpReserve {
                url,
                key,
                lines,
                skus,
                concurrency,
                duration: Duration::from_secs(seconds),
                max_requests,
            };
            run.set_up(&admin_key).await?;
            run.run().await
        }
        Command::Scale {
            skus,
            redis_url,
            database_url,
        } => scale(skus, &redis_url, &database_url).await,
    }
}

struct HttpReserve {
    url: String,
    key: String,
    lines: usize,
    skus: usize,
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
}

fn sku_name(i: usize) -> String {
    format!("BENCH-{i:06}")
}

impl HttpReserve {
    async fn set_up(&self, admin_key: &str) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        for chunk in (0..self.skus).collect::<Vec<_>>().chunks(64) {
            let puts = chunk.iter().map(|i| {
                client
                    .put(format!("{}/v1/skus/{}", self.url, sku_name(*i)))
                    .bearer_auth(admin_key)
                    .json(&json!({ "on_hand": 1_000_000_000_i64 }))
                    .send()
            });
            for res in join_all(puts).await {
                let res = res.context("is stockhold running? (scripts/run.sh)")?;
                if !res.status().is_success() {
                    bail!("setting up SKUs: {} {}", res.status(), res.text().await?);
                }
            }
        }
        eprintln!(
            "set up {} SKUs in {:.1} s",
            self.skus,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    async fn run(&self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(self.concurrency)
            .build()?;
        let started = Instant::now();
        let deadline = started + self.duration;
        let per_worker = self.max_requests / self.concurrency as u64;
        let workers = (0..self.concurrency).map(|_| {
            let client = client.clone();
            async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
                let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
                let mut sent = 0;
                while Instant::now() < deadline && sent < per_worker {
                    let lines: Vec<_> = sample(&mut rand::thread_rng(), self.skus, self.lines)
                        .into_iter()
                        .map(|i| json!({ "sku": sku_name(i), "qty": 1 }))
                        .collect();
                    let body = json!({ "lines": lines, "ttl_seconds": 5 });
                    let t = Instant::now();
                    let status = match client
                        .post(format!("{}/v1/reservations", self.url))
                        .bearer_auth(&self.key)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            let _ = res.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    hist.record(t.elapsed().as_micros() as u64).unwrap();
                    *statuses.entry(status).or_default() += 1;
                    sent += 1;
                }
                (hist, statuses)
            }
        });
        let results = join_all(workers).await;
        let elapsed = started.elapsed().as_secs_f64();
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        for (h, s) in results {
            hist.add(h).unwrap();
            for (k, v) in s {
                *statuses.entry(k).or_default() += v;
            }
        }
        let ok = statuses.get(&201).copied().unwrap_or(0);
        println!(
            "http-reserve: {} lines per basket, {} SKUs, {} in flight, {:.1} s",
            self.lines, self.skus, self.concurrency, elapsed
        );
        println!(
            "  baskets reserved (201): {ok}   other answers: {:?}",
            statuses
                .iter()
                .filter(|(k, _)| **k != 201)
                .collect::<Vec<_>>()
        );
        println!(
            "  throughput: {:.0} baskets/s ({:.0} lines/s)",
            ok as f64 / elapsed,
            ok as f64 * self.lines as f64 / elapsed
        );
        println!(
            "  latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0,
            hist.value_at_quantile(0.999) as f64 / 1000.0,
            hist.max() as f64 / 1000.0
        );
        Ok(())
    }
}

async fn scale(skus: i64, redis_url: &str, admin_url: &str) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("bench_{id}");
    let admin = sqlx::PgPool::connect(admin_url)
        .await
        .context("connecting to Postgres")?;
    sqlx::query(&format!(r#"CREATE DATABASE "{db}""#))
        .execute(&admin)
        .await?;
    let mut settings = get_configuration()?;
    settings.redis.url = redis_url.to_owned();
    settings.redis.key_prefix = format!("bench{id}");
    settings.database.url = format!(
        "{}/{db}",
        admin_url.rsplit_once('/').context("database url")?.0
    );
    let result = async {
        let stock = connect(&settings).await?;
        let started = Instant::now();
        sqlx::query(
            "INSERT INTO skus (sku, on_hand, backorder_limit, settings_ms, settings_seq, created_at, updated_at)
             SELECT 'SKU-' || lpad(g::text, 7, '0'), 1000, 0, 0, 0, now(), now() FROM generate_series(1, $1) g",
        )
        .bind(skus)
        .execute(stock.ledger.pool())
        .await?;
        eprintln!("ledger of {skus} SKUs written in {:.1} s", started.elapsed().as_secs_f64());
        let reconciler = Reconciler::new(stock.engine.clone(), stock.ledger.clone());
        let started = Instant::now();
        reconciler.start_up("bench").await?;
        let rebuild = started.elapsed();
        let report = reconciler.reconcile(ReconcileMode::Check, None).await?;
        println!("scale: {skus} SKUs");
        println!("  start-up rebuild of an empty Redis: {:.2} s", rebuild.as_secs_f64());
        println!(
            "  dry-run reconcile: {:.2} s, {} checked, {} drifted",
            report.duration.as_secs_f64(),
            report.checked,
            report.drifted.len()
        );
        anyhow::Ok(())
    }
    .await;
    // Clean up whatever happened above.
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#))
        .execute(&admin)
        .await?;
    delete_prefix(redis_url, &settings.redis.key_prefix).await?;
    result
}

async fn delete_prefix(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
