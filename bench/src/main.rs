//! stockhold-bench: measures stockhold on this machine and prints figures.
//!
//! - `http-reserve`: N-line baskets reserved over HTTP against a running
//!   stockhold (scripts/run.sh), for a bounded time and count.
//! - `scale`: a ledger of N SKUs in a fresh database; times the start-up
//!   rebuild of an empty Redis from it and a dry-run reconcile.
//! - `suite`: everything side by side in one run (see `suite.rs`): stockhold
//!   over HTTP (in this process), its engine called directly, and the SQL
//!   baselines; writes a markdown table and an SVG plot to bench-results/.
//!   `suite --smoke` is the seconds-long run the test suite makes.
//! - `cluster`: stockhold on a Redis Cluster (see `cluster.rs`): baskets
//!   over 1, 2 and 4 partitions over HTTP, Redis time per call per master,
//!   and the latency a `WAIT` for a replica adds to a write; writes
//!   bench-results/cluster-*.md.
//! - `pools`: the reserve script's Redis time per line with a channel
//!   allocation on every SKU against none, alternated in one run (see
//!   `pools.rs`).

mod cluster;
mod latency;
mod load;
mod machine;
mod pools;
mod reference;
mod report;
mod suite;
mod targets;

// The same allocator as the stockhold binary (src/main.rs), so the service
// measured in this process runs as it does in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use futures_util::future::join_all;
use hdrhistogram::Histogram;
use rand::seq::index::sample;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
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
    /// Every workload against stockhold over HTTP, its engine directly and
    /// the SQL baselines; writes a markdown table and an SVG plot.
    Suite {
        /// Seconds each workload runs against each system.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Requests (baskets, shoppers) in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// SKUs the baskets draw from (uniformly), besides the hot one.
        #[arg(long, default_value_t = 10_000)]
        skus: usize,
        /// Lines per basket.
        #[arg(long, default_value_t = 60)]
        lines: usize,
        /// Redis (a fresh key prefix is used and removed).
        #[arg(long, default_value = "redis://127.0.0.1:6380/")]
        redis_url: String,
        /// Postgres server (fresh databases are created and dropped).
        #[arg(long, default_value = "postgres://stockhold@127.0.0.1:5433/postgres")]
        database_url: String,
        /// Names of the databases created start with this.
        #[arg(long, default_value = "bench_")]
        db_prefix: String,
        /// Where the table and the plot go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// SKUs of the start-up rebuild measurement (0: skip it).
        #[arg(long, default_value_t = 1_000_000)]
        scale_skus: i64,
        /// Holds made to measure Redis memory per hold.
        #[arg(long, default_value_t = 5_000)]
        hold_samples: u64,
        /// Orders in the backlog the drain's rate is measured on.
        #[arg(long, default_value_t = 5_000)]
        drain_orders: u64,
        /// Reserve calls made one at a time to time the script alone.
        #[arg(long, default_value_t = 2_000)]
        script_samples: u64,
        /// Workloads to run, of r (reserve only), a, b, c, d and the HTTP
        /// tier's 1-call ones v (availability), s (sold out), 1 (1-line
        /// reserve), each judged against the floor (/healthz, measured
        /// whenever one of them runs); or none.
        #[arg(long, value_delimiter = ',', default_value = "v,s,1,r,a,b,c,d")]
        workloads: Vec<String>,
        /// Units started at most per phase (a bound besides the time).
        #[arg(long, default_value_t = 2_000_000)]
        max_units: u64,
        /// A seconds-long run of everything at small sizes (the test suite's).
        #[arg(long)]
        smoke: bool,
        /// Threads of the load generator. The service runs on a runtime of
        /// its own, as in production; on a small machine every generator
        /// thread is one more competing with it and Redis for the cores.
        #[arg(long, default_value_t = 1)]
        client_threads: usize,
    },
    /// stockhold on a Redis Cluster: baskets over 1, 2 and 4 partitions
    /// over HTTP, Redis time per call per master, WAIT for a replica.
    Cluster(cluster::Options),
    /// The reserve script's Redis time per line with a channel allocation
    /// on every SKU against none, in one run.
    Pools(pools::Options),
    /// The reserve script's Redis time per line writing events against
    /// writing none (`events.enabled = false`), in one run.
    Events(pools::Options),
    /// The delay from a commit to its event at an SSE client and a webhook
    /// receiver under load; a receiver down under load, then back.
    EventLatency(latency::Options),
    /// Time the start-up rebuild and a dry-run reconcile over N SKUs.
    Scale {
        /// SKUs in the ledger.
        #[arg(long, default_value_t = 1_000_000)]
        skus: i64,
        /// Live holds of 60 lines each (random SKUs) while reconciling.
        #[arg(long, default_value_t = 0)]
        holds: usize,
        /// Redis to rebuild into (a fresh key prefix is used and removed).
        #[arg(long, default_value = "redis://127.0.0.1:6380/")]
        redis_url: String,
        /// Postgres server (a fresh database is created and dropped).
        #[arg(long, default_value = "postgres://stockhold@127.0.0.1:5433/postgres")]
        database_url: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let client_threads = match &cli.command {
        Command::Suite { client_threads, .. } => Some(*client_threads),
        Command::Cluster(opts) => Some(opts.client_threads),
        _ => None,
    };
    if let Some(threads) = client_threads {
        anyhow::ensure!(threads >= 1, "--client-threads must be at least 1");
        runtime.worker_threads(threads);
    }
    runtime
        .enable_all()
        .thread_name("bench")
        .build()
        .context("building the load generator's runtime")?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
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
        Command::Suite {
            seconds,
            concurrency,
            skus,
            lines,
            redis_url,
            database_url,
            db_prefix,
            out,
            scale_skus,
            hold_samples,
            drain_orders,
            script_samples,
            workloads,
            max_units,
            smoke,
            client_threads,
        } => {
            let workloads = workloads
                .iter()
                .filter(|t| !matches!(t.trim(), "" | "none"))
                .map(|t| {
                    suite::Workload::from_tag(t.trim())
                        .filter(|w| *w != suite::Workload::Floor)
                        .with_context(|| {
                            format!("--workloads: {t:?} is none of v, s, 1, r, a, b, c, d")
                        })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut opts = suite::Options {
                seconds,
                concurrency,
                skus,
                lines,
                redis_url,
                database_url,
                db_prefix,
                out,
                scale_skus,
                hold_samples,
                drain_orders,
                script_samples,
                workloads,
                max_units,
                smoke,
                client_threads,
                command: std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            };
            if opts.smoke {
                opts.seconds = opts.seconds.min(0.3);
                opts.concurrency = opts.concurrency.min(8);
                opts.skus = opts.skus.min(500);
                opts.scale_skus = opts.scale_skus.min(2_000);
                opts.hold_samples = opts.hold_samples.min(50);
                opts.drain_orders = opts.drain_orders.min(100);
                opts.script_samples = opts.script_samples.min(20);
            }
            anyhow::ensure!(
                opts.lines >= 2 && opts.lines <= 500 && opts.lines <= opts.skus,
                "--lines must be 2 to 500 and at most --skus"
            );
            suite::run(opts).await
        }
        Command::Cluster(mut opts) => {
            opts.command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
            if opts.smoke {
                opts.seconds = opts.seconds.min(0.3);
                opts.concurrency = opts.concurrency.min(8);
                opts.skus = opts.skus.min(2_000);
                opts.lines = opts.lines.min(12);
                opts.slowlog_len = opts.slowlog_len.min(256);
                opts.wait_samples = opts.wait_samples.min(20);
            }
            anyhow::ensure!(
                (1..=500).contains(&opts.lines) && opts.lines <= opts.skus,
                "--lines must be 1 to 500 and at most --skus"
            );
            anyhow::ensure!(
                !opts.spreads.is_empty() && opts.spreads.iter().all(|&s| s >= 1 && s <= opts.lines),
                "--spreads: each from 1 to --lines"
            );
            anyhow::ensure!(
                (1..=stockhold::domain::MAX_PARTITIONS).contains(&opts.partitions),
                "--partitions must be 1 to {}",
                stockhold::domain::MAX_PARTITIONS
            );
            anyhow::ensure!(
                opts.utilisation > 0.0 && opts.utilisation <= 1.0,
                "--utilisation must be in (0, 1]"
            );
            cluster::run(opts).await
        }
        Command::Pools(opts) => pools::run(opts, pools::Compare::Allocations).await,
        Command::Events(opts) => pools::run(opts, pools::Compare::Events).await,
        Command::EventLatency(opts) => latency::run(opts).await,
        Command::Scale {
            skus,
            holds,
            redis_url,
            database_url,
        } => {
            let r = scale(skus, holds, &redis_url, &database_url, "bench_").await?;
            println!("scale: {skus} SKUs, {holds} live holds of {HOLD_LINES} lines");
            println!(
                "  start-up rebuild of an empty Redis: {:.2} s",
                r.rebuild.as_secs_f64()
            );
            println!(
                "  dry-run reconcile: {:.2} s, {} checked, {} drifted; longest script call {}",
                r.reconcile.as_secs_f64(),
                r.checked,
                r.drifted,
                r.longest_call
                    .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
                    .unwrap_or_else(|| "under 1 ms (none in the slow log)".into())
            );
            Ok(())
        }
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

/// What `scale` measured.
#[derive(Debug, Clone)]
pub struct ScaleResult {
    /// Writing the ledger of N SKUs (set-up, for scale).
    pub ledger_write: Duration,
    /// Start-up rebuild of an empty Redis from it.
    pub rebuild: Duration,
    /// A dry-run reconcile of all of it.
    pub reconcile: Duration,
    /// SKUs the reconcile checked.
    pub checked: usize,
    /// SKUs it found drifted (0 expected).
    pub drifted: usize,
    /// The longest single Redis call during the reconcile (from the slow
    /// log, which keeps calls of 1 ms or more).
    pub longest_call: Option<Duration>,
}

/// Lines of each live hold `scale` makes.
const HOLD_LINES: usize = 60;

async fn scale(
    skus: i64,
    holds: usize,
    redis_url: &str,
    admin_url: &str,
    db_prefix: &str,
) -> anyhow::Result<ScaleResult> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let db = format!("{db_prefix}{id}");
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
        let ledger_write = started.elapsed();
        let reconciler = Reconciler::new(stock.engine.clone(), stock.ledger.clone());
        let started = Instant::now();
        reconciler.start_up("bench").await?;
        let rebuild = started.elapsed();
        make_holds(&stock.engine, skus, holds).await?;
        if holds > 0 {
            // The rebuild's own repair passes (1, 3, 10 and 30 s after it)
            // would run alongside the reconcile timed here: wait for the
            // last to start, and let an untimed reconcile run beside it.
            tokio::time::sleep_until((started + rebuild + Duration::from_secs(31)).into()).await;
            reconciler.reconcile(ReconcileMode::Check, None).await?;
        }
        let slow_log = SlowLog::start(redis_url).await?;
        let report = reconciler.reconcile(ReconcileMode::Check, None).await?;
        let longest_call = slow_log.longest().await?;
        anyhow::Ok(ScaleResult {
            ledger_write,
            rebuild,
            reconcile: report.duration,
            checked: report.checked,
            drifted: report.drifted.len(),
            longest_call,
        })
    }
    .await;
    // Clean up whatever happened above.
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#))
        .execute(&admin)
        .await?;
    delete_prefix(redis_url, &settings.redis.key_prefix).await?;
    result
}

/// `holds` live holds of `HOLD_LINES` random SKUs of `SKU-0000001` ..
/// `skus` each, one unit a line, 16 at a time.
async fn make_holds(
    engine: &stockhold::engine::Engine,
    skus: i64,
    holds: usize,
) -> anyhow::Result<()> {
    use futures_util::StreamExt;
    use rand::Rng;
    use stockhold::domain::{ReservationId, ReserveRequest, Sku};
    futures_util::stream::iter(0..holds)
        .map(|_| async move {
            let mut lines: Vec<(Sku, i64)> = Vec::with_capacity(HOLD_LINES);
            let mut rng = rand::thread_rng();
            while lines.len() < HOLD_LINES.min(skus as usize) {
                let sku = Sku::parse(&format!("SKU-{:07}", rng.gen_range(1..=skus)))
                    .expect("a valid SKU");
                if !lines.iter().any(|(s, _)| *s == sku) {
                    lines.push((sku, 1));
                }
            }
            let req = ReserveRequest {
                lines,
                ttl_seconds: 3600,
                customer_id: None,
                channel: None,
                allow_partial: false,
            };
            let id = ReservationId::random(engine.home_for(&req.lines));
            engine
                .reserve(&id, &req)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// Redis's slow log over a stretch of time: calls of 1 ms or more.
struct SlowLog {
    conn: redis::aio::MultiplexedConnection,
    threshold: String,
}

impl SlowLog {
    async fn start(redis_url: &str) -> anyhow::Result<SlowLog> {
        let mut conn = redis::Client::open(redis_url)?
            .get_multiplexed_async_connection()
            .await?;
        let (_, threshold): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("slowlog-log-slower-than")
            .query_async(&mut conn)
            .await?;
        redis::pipe()
            .cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(1000)
            .ignore()
            .cmd("SLOWLOG")
            .arg("RESET")
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(SlowLog { conn, threshold })
    }

    /// The longest call logged since `start` (and the old threshold back).
    async fn longest(mut self) -> anyhow::Result<Option<Duration>> {
        let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(-1)
            .query_async(&mut self.conn)
            .await?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(&self.threshold)
            .query_async::<()>(&mut self.conn)
            .await?;
        Ok(entries
            .iter()
            .filter_map(|e| match e {
                redis::Value::Array(fields) => match fields.get(2) {
                    Some(redis::Value::Int(us)) => Some(Duration::from_micros(*us as u64)),
                    _ => None,
                },
                _ => None,
            })
            .max())
    }
}

pub(crate) async fn delete_prefix(redis_url: &str, prefix: &str) -> anyhow::Result<()> {
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
