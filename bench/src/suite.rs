//! `suite`: every workload against stockhold over HTTP, stockhold's engine
//! called directly (the ceiling) and the SQL baselines, in one run on one
//! machine; plus Redis memory and time per hold, reconciler lag and drain
//! rate, and the start-up rebuild at scale. Writes a markdown table and an
//! SVG plot into the output directory.

use crate::load::{self, Pacer, Plan, Ran, Recorder};
use crate::machine::{self, CpuSnap, CpuUse, Machine};
use crate::report;
use crate::targets::{sql_schema, Catalogue, Target, SOLD_OUT};
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use redis::aio::MultiplexedConnection;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockhold::configuration::{get_configuration, Settings};
use stockhold::domain::{
    OrderId, Partition, PutSkuRequest, ReservationId, ReserveRequest, Setting, Sku, StreamId,
};
use stockhold::reconciler::{Drain, Outcome, Reconciler};
use stockhold::service::Stock;
use stockhold::startup::{connect, Application};
use tokio_util::sync::CancellationToken;

/// The stock every SKU starts with: no basket is ever short, so every
/// workload measures the success path.
pub(crate) const ON_HAND: i64 = 1_000_000_000;

/// Options of a suite run.
#[derive(Debug, Clone)]
pub struct Options {
    pub seconds: f64,
    pub concurrency: usize,
    pub skus: usize,
    pub lines: usize,
    pub redis_url: String,
    pub database_url: String,
    pub db_prefix: String,
    pub out: PathBuf,
    pub scale_skus: i64,
    pub hold_samples: u64,
    pub drain_orders: u64,
    pub script_samples: u64,
    pub workloads: Vec<Workload>,
    pub max_units: u64,
    pub smoke: bool,
    pub client_threads: usize,
    pub command: String,
}

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// 60-line baskets reserved only (the reserve targets).
    Reserve,
    /// (a) reserve then commit, uniform over the SKUs.
    Uniform,
    /// (b) the same with one hot SKU in every basket.
    Hot,
    /// (c) 1-line baskets on one hot SKU.
    Flash,
    /// (d) the shopping day.
    Day,
    /// (f) `GET /healthz`: the floor of the HTTP tier.
    Floor,
    /// (v) availability of one SKU.
    Availability,
    /// (s) a 1-line reserve of a sold-out SKU (`409`).
    SoldOut,
    /// (1) a 1-line reserve of the hot SKU, held.
    One,
}

impl Workload {
    pub const ALL: [Workload; 9] = [
        Workload::Reserve,
        Workload::Uniform,
        Workload::Hot,
        Workload::Flash,
        Workload::Day,
        Workload::Floor,
        Workload::Availability,
        Workload::SoldOut,
        Workload::One,
    ];

    /// The basket workloads (those with SQL baselines).
    pub const BASKETS: [Workload; 5] = [
        Workload::Reserve,
        Workload::Uniform,
        Workload::Hot,
        Workload::Flash,
        Workload::Day,
    ];

    /// The 1-call workloads of the HTTP tier, each judged against the floor.
    pub const TIER: [Workload; 3] = [Workload::Availability, Workload::SoldOut, Workload::One];

    pub fn from_tag(tag: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.tag() == tag)
    }

    pub fn tag(self) -> &'static str {
        match self {
            Workload::Reserve => "r",
            Workload::Uniform => "a",
            Workload::Hot => "b",
            Workload::Flash => "c",
            Workload::Day => "d",
            Workload::Floor => "f",
            Workload::Availability => "v",
            Workload::SoldOut => "s",
            Workload::One => "1",
        }
    }

    pub fn describe(self, lines: usize, skus: usize) -> String {
        match self {
            Workload::Reserve => format!("(r) reserve only, {lines}-line baskets, uniform over {skus} SKUs"),
            Workload::Uniform => format!("(a) reserve + commit, {lines}-line baskets, uniform over {skus} SKUs"),
            Workload::Hot => "(b) as (a) with one hot SKU in every basket".into(),
            Workload::Flash => "(c) flash sale: reserve + commit of 1-line baskets, all on one hot SKU".into(),
            Workload::Day => format!(
                "(d) shopping day: baskets grown by PATCH to {lines} lines in steps of {DAY_STEP}, \
                 {DAY_READS} availability reads of {DAY_READ_SKUS} SKUs per step, {}% committed, the rest abandoned to expire",
                100 - DAY_ABANDON_PCT
            ),
            Workload::Floor => "(f) `GET /healthz`: the HTTP tier's floor (no Redis, no body)".into(),
            Workload::Availability => "(v) `GET /v1/availability` of the hot SKU".into(),
            Workload::SoldOut => format!("(s) 1-line reserve of a sold-out SKU ({SOLD_OUT}): `409 insufficient_stock`"),
            Workload::One => "(1) 1-line reserve of the hot SKU, left held (`201`)".into(),
        }
    }

    /// What one unit of its rate is.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::Reserve | Workload::Uniform | Workload::Hot | Workload::Flash => "baskets/s",
            _ => "calls/s",
        }
    }
}

const DAY_STEP: usize = 5;
const DAY_READS: usize = 4;
const DAY_READ_SKUS: usize = 20;
const DAY_ABANDON_PCT: u32 = 30;

/// Reconciler lag seen while commits ran.
#[derive(Debug, Clone, Default)]
pub struct Lag {
    pub samples: usize,
    pub max_entries: u64,
    pub mean_entries: f64,
    pub max_ms: i64,
    /// After the load stopped, until no entry was after the watermark.
    pub catch_up: Option<Duration>,
}

/// One measured phase.
pub struct Phase {
    pub workload: Workload,
    pub target: &'static str,
    pub ran: Ran,
    pub cpu: CpuUse,
    /// Script calls (EVALSHA) in the phase and their mean Redis time, µs.
    pub evalsha: Option<(u64, f64)>,
    /// Open loop at this many units/s.
    pub rate: Option<f64>,
    pub lag: Option<Lag>,
}

/// Figures that are not a workload run.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub memory_per_hold: Option<f64>,
    pub memory_holds: u64,
    pub drain_orders: u64,
    pub drain_secs: f64,
    pub drain_batch: usize,
    pub backlog_rate: f64,
    pub drain_cpu: Option<CpuUse>,
    /// Seconds the drain measurement waited for autovacuum to finish.
    pub drain_waited: f64,
    /// EVALSHA `(calls, µs per call)` of reserves made one at a time.
    pub script_alone: Option<(u64, f64)>,
    /// The plain MGET + DECRBY + HSET script in the same two conditions.
    pub reference: Option<crate::reference::Reference>,
    pub scale: Option<crate::ScaleResult>,
    pub scale_skus: i64,
}

/// Everything a run produced, for the report.
pub struct Run {
    pub options: Options,
    pub machine: Machine,
    pub started: chrono::DateTime<chrono::Utc>,
    pub service: String,
    pub phases: Vec<Phase>,
    pub extras: Extras,
}

struct Ctx {
    opts: Options,
    cat: Arc<Catalogue>,
    redis: MultiplexedConnection,
    redis_pid: Option<u32>,
    postmaster: Option<u32>,
    phases: Vec<Phase>,
    seed: u64,
}

pub(crate) async fn info(
    conn: &mut MultiplexedConnection,
    section: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let text: String = redis::cmd("INFO").arg(section).query_async(conn).await?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect())
}

/// `(calls, usec_per_call)` of EVALSHA since the last CONFIG RESETSTAT.
pub(crate) async fn evalsha_stats(
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<Option<(u64, f64)>> {
    let stats = info(conn, "commandstats").await?;
    Ok(stats.get("cmdstat_evalsha").map(|v| {
        let field = |name: &str| -> f64 {
            v.split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .and_then(|x| x.parse().ok())
                .unwrap_or(0.0)
        };
        (field("calls") as u64, field("usec_per_call"))
    }))
}

async fn used_memory(conn: &mut MultiplexedConnection) -> anyhow::Result<f64> {
    let mem = info(conn, "memory").await?;
    mem.get("used_memory")
        .and_then(|v| v.parse().ok())
        .context("INFO memory has no used_memory")
}

/// Rewrites Redis's AOF and waits for it: a run writes a few hundred MB to
/// the AOF, so starting from a fresh one keeps Redis's automatic rewrite
/// (a fork and a child busy for seconds) out of the measured phases.
async fn rewrite_aof(conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
    let _: String = redis::cmd("BGREWRITEAOF").query_async(conn).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let p = info(conn, "persistence").await?;
        let busy = |k: &str| p.get(k).is_some_and(|v| v != "0");
        if !busy("aof_rewrite_in_progress") && !busy("aof_rewrite_scheduled") {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Redis's AOF rewrite took over 2 minutes"
        );
    }
}

fn seconds(d: f64) -> Duration {
    Duration::from_secs_f64(d)
}

impl Ctx {
    fn plan(&self, concurrency: usize, rate: Option<f64>) -> Plan {
        Plan {
            concurrency,
            duration: seconds(self.opts.seconds),
            max_units: self.opts.max_units,
            rate,
        }
    }

    fn ttl(&self, wl: Workload) -> i64 {
        match wl {
            // Reserve-only holds stay until the run is cleaned up, so that
            // the reaper has nothing to do during later phases.
            Workload::Reserve | Workload::One => 3_600,
            Workload::Day if self.opts.smoke => 2,
            Workload::Day => 10,
            _ => 300,
        }
    }

    /// Runs `wl` against `target` and keeps the figures.
    async fn phase(
        &mut self,
        wl: Workload,
        target: &Arc<Target>,
        rate: Option<f64>,
        lag_of: Option<&Stock>,
    ) -> anyhow::Result<&Phase> {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut self.redis)
            .await?;
        let cpu = CpuSnap::take();
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = lag_of
            .map(|stock| tokio::spawn(sample_lag(stock.clone(), self.redis.clone(), stop.clone())));
        let concurrency = if rate.is_some() {
            self.opts.concurrency * 2
        } else {
            self.opts.concurrency
        };
        let plan = self.plan(concurrency, rate);
        let title = match rate {
            Some(r) => format!("({}) {} @ {:.0}/s", wl.tag(), target.name(), r),
            None => format!("({}) {}", wl.tag(), target.name()),
        };
        self.seed += 1000;
        let ran = run_workload(
            &title,
            &plan,
            wl,
            target,
            &self.cat,
            self.opts.lines,
            self.ttl(wl),
            self.seed,
        )
        .await;
        let cpu = cpu.since(self.redis_pid, self.postmaster);
        let evalsha = evalsha_stats(&mut self.redis).await?;
        stop.store(true, Relaxed);
        let lag = match sampler {
            Some(s) => Some(s.await?),
            None => None,
        };
        self.phases.push(Phase {
            workload: wl,
            target: target.name(),
            ran,
            cpu,
            evalsha,
            rate,
            lag,
        });
        Ok(self.phases.last().expect("just pushed"))
    }
}

/// Runs `wl` against `target` under `plan`.
#[allow(clippy::too_many_arguments)]
async fn run_workload(
    title: &str,
    plan: &Plan,
    wl: Workload,
    target: &Arc<Target>,
    cat: &Arc<Catalogue>,
    lines: usize,
    ttl: i64,
    seed: u64,
) -> Ran {
    load::run(title, plan, |i, pacer, rec| {
        let (target, cat) = (target.clone(), cat.clone());
        let seed = seed + i as u64;
        async move {
            match wl {
                Workload::Day => day_worker(&cat, &target, lines, ttl, pacer, rec, seed).await,
                Workload::Floor | Workload::Availability | Workload::SoldOut | Workload::One => {
                    tier_worker(&cat, &target, wl, ttl, pacer, rec).await
                }
                _ => basket_worker(&cat, &target, wl, lines, ttl, pacer, rec, seed).await,
            }
        }
    })
    .await
}

fn basket(cat: &Catalogue, wl: Workload, lines: usize, rng: &mut SmallRng) -> Vec<usize> {
    match wl {
        Workload::Flash => vec![cat.hot],
        Workload::Hot => {
            let mut v = sample(rng, cat.uniform, lines - 1).into_vec();
            let at = rng.gen_range(0..=v.len());
            v.insert(at, cat.hot);
            v
        }
        _ => sample(rng, cat.uniform, lines).into_vec(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn basket_worker(
    cat: &Catalogue,
    target: &Target,
    wl: Workload,
    lines: usize,
    ttl: i64,
    pacer: Pacer,
    mut rec: Recorder,
    seed: u64,
) -> Recorder {
    let mut rng = SmallRng::seed_from_u64(seed);
    while let Some(start) = pacer.next().await {
        let idx = basket(cat, wl, lines, &mut rng);
        let commit = wl != Workload::Reserve;
        if target.basket(cat, &idx, commit, ttl, &mut rec).await {
            rec.unit_done(start, idx.len());
        }
    }
    rec
}

/// One call after another, each a unit: the floor, a 1-SKU availability
/// read, or a 1-line reserve (sold out, or held).
async fn tier_worker(
    cat: &Catalogue,
    target: &Target,
    wl: Workload,
    ttl: i64,
    pacer: Pacer,
    mut rec: Recorder,
) -> Recorder {
    let sold_out = Sku::parse(SOLD_OUT).expect("a valid SKU name");
    while let Some(start) = pacer.next().await {
        let (ok, lines) = match wl {
            Workload::Floor => (target.healthz(&mut rec).await, 0),
            Workload::Availability => (target.read(cat, &[cat.hot], &mut rec).await, 0),
            Workload::SoldOut => (target.reserve_one(&sold_out, true, ttl, &mut rec).await, 0),
            _ => (
                target
                    .reserve_one(&cat.skus[cat.hot], false, ttl, &mut rec)
                    .await,
                1,
            ),
        };
        if ok {
            rec.unit_done(start, lines);
        }
    }
    rec
}

/// One shopper after another: a basket grown step by step with product
/// page reads between the steps, then committed or abandoned.
async fn day_worker(
    cat: &Catalogue,
    target: &Target,
    lines: usize,
    ttl: i64,
    pacer: Pacer,
    mut rec: Recorder,
    seed: u64,
) -> Recorder {
    let mut rng = SmallRng::seed_from_u64(seed);
    'shopper: while pacer.next().await.is_some() {
        let wanted = sample(&mut rng, cat.uniform, lines).into_vec();
        let steps = wanted.len().div_ceil(DAY_STEP);
        let abandon_after =
            (rng.gen_range(0..100) < DAY_ABANDON_PCT).then(|| rng.gen_range(1..=steps));
        let mut id: Option<String> = None;
        for (step, chunk) in wanted.chunks(DAY_STEP).enumerate() {
            for _ in 0..DAY_READS {
                if !pacer.running() {
                    break 'shopper;
                }
                let page = sample(&mut rng, cat.uniform, DAY_READ_SKUS).into_vec();
                let t = std::time::Instant::now();
                if target.read(cat, &page, &mut rec).await {
                    rec.unit_done(t, 0);
                }
            }
            if !pacer.running() {
                break 'shopper;
            }
            let t = std::time::Instant::now();
            let ok = match &id {
                None => {
                    id = target.open(cat, chunk, ttl, &mut rec).await;
                    id.is_some()
                }
                Some(id) => target.add(cat, id, chunk, ttl, &mut rec).await,
            };
            if !ok {
                continue 'shopper;
            }
            rec.unit_done(t, chunk.len());
            if abandon_after == Some(step + 1) {
                continue 'shopper;
            }
        }
        if let Some(id) = id {
            let t = std::time::Instant::now();
            if target.checkout(&id, &mut rec).await {
                rec.unit_done(t, 0);
            }
        }
    }
    rec
}

/// Samples every 250 ms how far the outbox is ahead of the Postgres
/// watermark: entries after it, and the age of the watermark against the
/// newest entry.
async fn sample_lag(stock: Stock, mut redis: MultiplexedConnection, stop: Arc<AtomicBool>) -> Lag {
    let keys = stock.engine.keys();
    let streams: Vec<(Partition, String)> = keys
        .partitions()
        .all()
        .map(|p| (p, keys.part(p).outbox()))
        .collect();
    let count = redis::Script::new(
        "local r = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2]) return #r",
    );
    let mut lag = Lag::default();
    let mut total = 0u64;
    let mut stopped_at: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut sample = Some((0, 0));
        for (p, key) in &streams {
            sample = match (
                sample,
                lag_sample(&stock, *p, key, &count, &mut redis).await,
            ) {
                (Some((n, ms)), Some((m, ms2))) => Some((n + m, ms.max(ms2))),
                _ => None,
            };
        }
        let Some((n, ms)) = sample else {
            continue;
        };
        match stopped_at {
            None => {
                lag.samples += 1;
                total += n;
                lag.max_entries = lag.max_entries.max(n);
                lag.max_ms = lag.max_ms.max(ms);
                if stop.load(Relaxed) {
                    if n == 0 {
                        lag.catch_up = Some(Duration::ZERO);
                        break;
                    }
                    stopped_at = Some(Instant::now());
                }
            }
            Some(at) if n == 0 => {
                lag.catch_up = Some(at.elapsed());
                break;
            }
            Some(at) if at.elapsed() > Duration::from_secs(60) => break,
            Some(_) => {}
        }
    }
    lag.mean_entries = total as f64 / lag.samples.max(1) as f64;
    lag
}

/// In partition `p`: `(entries after the watermark, ms between the oldest
/// and the newest of them)`.
async fn lag_sample(
    stock: &Stock,
    p: Partition,
    key: &str,
    count: &redis::Script,
    redis: &mut MultiplexedConnection,
) -> Option<(u64, i64)> {
    let wm: StreamId = stock.ledger.watermark(p).await.ok()?;
    let n: u64 = count
        .key(key)
        .arg(format!("({wm}"))
        .arg(1_000_000)
        .invoke_async(redis)
        .await
        .ok()?;
    if n == 0 {
        return Some((0, 0));
    }
    let ms_of = |entries: Vec<(String, HashMap<String, String>)>| {
        entries
            .first()
            .and_then(|(id, _)| id.parse::<StreamId>().ok())
            .map(|id| id.ms)
    };
    let newest = ms_of(
        redis::cmd("XREVRANGE")
            .arg(key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(redis)
            .await
            .ok()?,
    )?;
    let oldest = ms_of(
        redis::cmd("XRANGE")
            .arg(key)
            .arg(format!("({wm}"))
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(redis)
            .await
            .ok()?,
    )?;
    Some((n, newest - oldest))
}

/// Writes the catalogue straight into a fresh ledger (set-up, not measured):
/// the start-up rebuild then loads it into Redis.
pub(crate) async fn seed_ledger(stock: &Stock, cat: &Catalogue) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO skus (sku, on_hand, backorder_limit, settings_ms, settings_seq, created_at, updated_at)
         SELECT s, $2, 0, 0, 0, now(), now() FROM unnest($1::text[]) AS t(s)",
    )
    .bind(&cat.names)
    .bind(ON_HAND)
    .execute(stock.ledger.pool())
    .await?;
    Ok(())
}

pub(crate) fn database_url(admin_url: &str, db: &str) -> anyhow::Result<String> {
    Ok(format!(
        "{}/{db}",
        admin_url
            .rsplit_once('/')
            .context("database url has no path")?
            .0
    ))
}

/// The whole suite.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let started = chrono::Utc::now();
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let prefix = format!("bench{id}");
    let drain_prefix = format!("bench{id}d");
    let reference_prefix = format!("bench{id}p");
    let db = format!("{}{id}", opts.db_prefix);
    let drain_db = format!("{db}_drain");
    let admin = sqlx::PgPool::connect(&opts.database_url)
        .await
        .context("connecting to Postgres")?;
    let client = redis::Client::open(opts.redis_url.as_str())?;
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to Redis")?;

    // The machine, the servers and their durability settings.
    let server = info(&mut redis, "server").await?;
    let persistence = info(&mut redis, "persistence").await?;
    let config = |name: &'static str| {
        let mut conn = redis.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async::<Vec<String>>(&mut conn)
                .await
                .ok()
                .and_then(|v| v.get(1).cloned())
                .unwrap_or_else(|| "?".into())
        }
    };
    let redis_desc = format!(
        "Redis {} (appendonly {}, appendfsync {}, auto-aof-rewrite-min-size {}, save \"{}\")",
        server.get("redis_version").map_or("?", String::as_str),
        persistence
            .get("aof_enabled")
            .map_or("?", |v| if v == "1" { "yes" } else { "no" }),
        config("appendfsync").await,
        config("auto-aof-rewrite-min-size").await,
        config("save").await,
    );
    let redis_pid = server.get("process_id").and_then(|p| p.parse().ok());
    if persistence.get("aof_enabled").is_some_and(|v| v == "1") {
        rewrite_aof(&mut redis).await?;
    }
    let pg_row: (String, String, String, i32) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('fsync'),
                current_setting('synchronous_commit'), pg_backend_pid()",
    )
    .fetch_one(&admin)
    .await?;
    let postmaster = machine::parent_of(pg_row.3 as u32);
    let pg_desc = format!(
        "PostgreSQL {} (fsync {}, synchronous_commit {})",
        pg_row.0, pg_row.1, pg_row.2
    );
    let mut machine = Machine::read(redis_desc, pg_desc);
    machine.build = machine::service_build();
    eprintln!(
        "stockhold-bench suite: {} cores, load {}; Redis {} / Postgres {}",
        machine.cores, machine.load_before, opts.redis_url, opts.database_url
    );

    sqlx::query(&format!(r#"CREATE DATABASE "{db}""#))
        .execute(&admin)
        .await?;
    sqlx::query(&format!(r#"CREATE DATABASE "{drain_db}""#))
        .execute(&admin)
        .await?;
    let mut settings = get_configuration()?;
    settings.application.host = "127.0.0.1".into();
    settings.application.port = 0;
    settings.redis.url = opts.redis_url.clone();
    settings.redis.key_prefix = prefix.clone();
    settings.database.url = database_url(&opts.database_url, &db)?;
    // The service logs as deployed (its format and filter), into a file
    // rather than the terminal the progress bars are on.
    std::fs::create_dir_all(&opts.out)?;
    let log = opts.out.join("service.log");
    stockhold::telemetry::init_with(
        &settings.telemetry,
        Arc::new(
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?,
        ),
    );

    let shutdown = CancellationToken::new();
    let service_rt = service_runtime()?;
    let mut app_task = None;
    let result = async {
        let cat = Arc::new(Catalogue::new(opts.skus));
        let setup = Instant::now();
        let ledger_only = connect(&settings).await?;
        seed_ledger(&ledger_only, &cat).await?;
        let sql_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(opts.concurrency as u32 * 2)
            .connect(&settings.database.url)
            .await?;
        sql_schema(&sql_pool, &cat, ON_HAND).await?;
        drop(ledger_only);

        let app = build_on(&service_rt, &settings, &shutdown).await?;
        let base = format!("http://127.0.0.1:{}", app.port());
        let stock = app.stock().clone();
        let workers = app.workers();
        app_task = Some(service_rt.spawn(app.run_until_stopped()));
        let service = format!(
            "stockhold in this process (Application::build on 127.0.0.1, port 0, on a runtime of its own; {} actix workers, \
             {} shared Redis connections, Postgres pool {}, drain every {} ms in batches of {}; log: {} format, filter `{}`, into {}), key prefix and database of its own",
            workers,
            settings.redis.connections,
            settings.database.max_connections,
            settings.reconciler.drain_interval_ms,
            settings.reconciler.drain_batch,
            settings.telemetry.format,
            std::env::var("RUST_LOG").unwrap_or_else(|_| settings.telemetry.filter.clone()),
            log.display()
        );
        eprintln!(
            "set up {} SKUs (+1 hot) in ledger, Redis and the SQL baseline in {:.1} s; service on {base}",
            opts.skus,
            setup.elapsed().as_secs_f64()
        );

        let http = Arc::new(Target::Http {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(opts.concurrency * 2)
                .timeout(Duration::from_secs(30))
                .build()?,
            base,
            key: "dev-storefront-key".into(),
        });
        let direct = Arc::new(Target::Direct(stock.clone()));
        let sql_txn = Arc::new(Target::Sql {
            pool: sql_pool.clone(),
            function: false,
        });
        let sql_fn = Arc::new(Target::Sql {
            pool: sql_pool.clone(),
            function: true,
        });
        let mut ctx = Ctx {
            opts: opts.clone(),
            cat: cat.clone(),
            redis: redis.clone(),
            redis_pid,
            postmaster,
            phases: Vec::new(),
            seed: 7,
        };
        let mut extras = Extras {
            scale_skus: opts.scale_skus,
            drain_batch: settings.reconciler.drain_batch,
            ..Extras::default()
        };

        // Redis memory per active hold, measured before any other load.
        if opts.hold_samples > 0 {
            let before = used_memory(&mut redis).await?;
            let plan = Plan {
                concurrency: 8,
                duration: Duration::from_secs(120),
                max_units: opts.hold_samples,
                rate: None,
            };
            let held = run_workload(
                "memory: active 60-line holds",
                &plan,
                Workload::Reserve,
                &direct,
                &cat,
                opts.lines,
                3_600,
                1,
            )
            .await;
            let after = used_memory(&mut redis).await?;
            extras.memory_holds = held.rec.units;
            extras.memory_per_hold =
                (held.rec.units > 0).then(|| (after - before) / held.rec.units as f64);
        }

        // Redis time of the reserve script alone: one call at a time, so
        // that neither the load generator nor the service competes with
        // Redis for the cores while a script runs.
        if opts.script_samples > 0 {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut redis)
                .await?;
            let plan = Plan {
                concurrency: 1,
                duration: Duration::from_secs(60),
                max_units: opts.script_samples,
                rate: None,
            };
            run_workload(
                "reserve script, one at a time",
                &plan,
                Workload::Reserve,
                &direct,
                &cat,
                opts.lines,
                3_600,
                2,
            )
            .await;
            extras.script_alone = evalsha_stats(&mut redis).await?;
            let sizes = crate::reference::Sizes {
                skus: opts.skus,
                lines: opts.lines,
                alone_calls: opts.script_samples,
                concurrency: opts.concurrency,
                duration: seconds(opts.seconds),
                // Its holds stay until it ends: ~2 KB each.
                loaded_calls: opts.max_units.min(50_000),
            };
            extras.reference = Some(
                crate::reference::measure(&opts.redis_url, &reference_prefix, &sizes, &mut redis)
                    .await?,
            );
        }

        // The HTTP tier: 1-call requests against the floor, which is
        // measured before and after them (the report judges each against
        // the mean of the two); each also through the engine directly.
        if Workload::TIER.iter().any(|w| opts.workloads.contains(w)) {
            let none = PutSkuRequest {
                buckets: None,
                on_hand: Some(0),
                backorder_limit: None,
                per_customer_limit: Setting::Keep,
                sale_starts_at: Setting::Keep,
                safety_stock: None,
                allocations: None,
                low_stock: Setting::Keep,
            };
            stock
                .put_sku(&Sku::parse(SOLD_OUT).expect("a valid SKU name"), &none)
                .await?;
            ctx.phase(Workload::Floor, &http, None, None).await?;
            for wl in Workload::TIER {
                if opts.workloads.contains(&wl) {
                    ctx.phase(wl, &direct, None, None).await?;
                    ctx.phase(wl, &http, None, None).await?;
                }
            }
            ctx.phase(Workload::Floor, &http, None, None).await?;
        }

        // (r): the ceiling first (its EVALSHA time is the script's cost
        // under load), then HTTP flat out, then HTTP at half of that,
        // rate-limited.
        if opts.workloads.contains(&Workload::Reserve) {
            ctx.phase(Workload::Reserve, &direct, None, None).await?;
            let peak = ctx.phase(Workload::Reserve, &http, None, None).await?.ran.rate();
            ctx.phase(Workload::Reserve, &http, Some((peak / 2.0).max(1.0)), None)
                .await?;
        }
        for wl in [Workload::Uniform, Workload::Hot, Workload::Flash, Workload::Day] {
            if !opts.workloads.contains(&wl) {
                continue;
            }
            let lag = (wl == Workload::Uniform).then_some(&stock);
            ctx.phase(wl, &direct, None, lag).await?;
            ctx.phase(wl, &http, None, lag).await?;
            ctx.phase(wl, &sql_txn, None, None).await?;
            ctx.phase(wl, &sql_fn, None, None).await?;
        }

        // The drain's own rate: a backlog of commits made in Redis only (as
        // while Postgres is down), then persisted by the drain alone.
        if opts.drain_orders > 0 {
            let mut drain_settings = settings.clone();
            drain_settings.redis.key_prefix = drain_prefix.clone();
            drain_settings.database.url = database_url(&opts.database_url, &drain_db)?;
            let d = drain_rate(&drain_settings, &cat, &opts, redis_pid, postmaster).await?;
            extras.drain_orders = d.persisted;
            extras.drain_secs = d.secs;
            extras.backlog_rate = d.backlog_rate;
            extras.drain_cpu = Some(d.cpu);
            extras.drain_waited = d.waited;
        }

        // Start-up rebuild at scale (its own database and key prefix).
        if opts.scale_skus > 0 {
            let spinner = load::bar(&format!("rebuild of {} SKUs", opts.scale_skus), Duration::from_secs(1));
            spinner.enable_steady_tick(Duration::from_millis(250));
            spinner.set_message("writing the ledger, then rebuilding Redis from it");
            let r = crate::scale(opts.scale_skus, 0, &opts.redis_url, &opts.database_url, &opts.db_prefix).await?;
            spinner.finish_with_message(format!("rebuild {:.2} s", r.rebuild.as_secs_f64()));
            extras.scale = Some(r);
        }
        anyhow::Ok((ctx.phases, extras, service))
    }
    .await;

    // Clean up whatever happened above.
    shutdown.cancel();
    if let Some(task) = app_task {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    service_rt.shutdown_background();
    for name in [&db, &drain_db] {
        sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
            .execute(&admin)
            .await?;
    }
    crate::delete_prefix(&opts.redis_url, &prefix).await?;
    crate::delete_prefix(&opts.redis_url, &drain_prefix).await?;
    crate::delete_prefix(&opts.redis_url, &reference_prefix).await?;
    let (phases, extras, service) = result?;

    machine.load_after = machine::load_average();
    machine.top_after = machine::top();
    let run = Run {
        options: opts,
        machine,
        started,
        service,
        phases,
        extras,
    };
    let written = report::write(&run)?;
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    print!("{}", report::summary(&run));
    Ok(())
}

/// The drain measurement.
struct DrainRun {
    persisted: u64,
    secs: f64,
    /// Orders/s at which the backlog was made.
    backlog_rate: f64,
    cpu: CpuUse,
    /// Seconds waited for autovacuum before timing the drain.
    waited: f64,
}

/// Waits (two minutes at most) until no autovacuum worker runs on the
/// server: the workloads before leave big tables to vacuum, and a worker
/// busy with them takes the cores the drain measurement is about. Returns
/// the seconds waited.
async fn autovacuum_idle(pool: &sqlx::PgPool) -> anyhow::Result<f64> {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(120) {
        let (workers,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
        )
        .fetch_one(pool)
        .await?;
        if workers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Makes `opts.drain_orders` commits in Redis only, then times the drain
/// persisting them.
async fn drain_rate(
    settings: &Settings,
    cat: &Arc<Catalogue>,
    opts: &Options,
    redis_pid: Option<u32>,
    postmaster: Option<u32>,
) -> anyhow::Result<DrainRun> {
    let stock = connect(settings).await?;
    seed_ledger(&stock, cat).await?;
    Reconciler::new(stock.engine.clone(), stock.ledger.clone())
        .start_up("bench-drain")
        .await?;
    let plan = Plan {
        concurrency: opts.concurrency,
        duration: Duration::from_secs(300),
        max_units: opts.drain_orders,
        rate: None,
    };
    let lines = opts.lines;
    let made = load::run("drain: backlog (Redis only)", &plan, |i, pacer, mut rec| {
        let (stock, cat) = (stock.clone(), cat.clone());
        async move {
            let mut rng = SmallRng::seed_from_u64(99 + i as u64);
            while let Some(start) = pacer.next().await {
                let idx = sample(&mut rng, cat.uniform, lines).into_vec();
                let req = ReserveRequest {
                    lines: idx.iter().map(|&i| (cat.skus[i].clone(), 1)).collect(),
                    ttl_seconds: 600,
                    customer_id: None,
                    channel: None,
                    allow_partial: false,
                };
                let id = ReservationId::random(stock.engine.home_for(&req.lines));
                let t = Instant::now();
                let r = stock
                    .engine
                    .reserve(&id, &req)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string());
                if !rec.call("reserve", t, &r) {
                    continue;
                }
                let t = Instant::now();
                let r = stock
                    .engine
                    .commit(&id, &OrderId::for_reservation(&id), Some("bench"))
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string());
                if rec.call("commit (Redis only)", t, &r) {
                    rec.unit_done(start, lines);
                }
            }
            rec
        }
    })
    .await;
    let backlog = made.rec.units;
    let drain = Drain::new(
        stock.clone(),
        settings.reconciler.drain_batch,
        settings.database.commit_writers,
        Duration::from_secs(600),
    );
    let bar = indicatif::ProgressBar::new(backlog.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:<34} [{bar:24.cyan/blue}] {pos}/{len} {per_sec}",
        )
        .expect("progress template")
        .progress_chars("=> "),
    );
    bar.set_prefix("drain: persist the backlog");
    let waited = autovacuum_idle(stock.ledger.pool()).await?;
    let t = Instant::now();
    let cpu = CpuSnap::take();
    let mut entries = 0u64;
    loop {
        let (outcome, _more) = drain.try_execute_task().await?;
        match outcome {
            Outcome::Idle => break,
            Outcome::Worked(n) => {
                entries += n as u64;
                bar.set_position(entries.min(backlog));
            }
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "the drain did not finish in 10 minutes"
        );
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu.since(redis_pid, postmaster);
    bar.finish();
    let (persisted,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
        .fetch_one(stock.ledger.pool())
        .await?;
    Ok(DrainRun {
        persisted: persisted as u64,
        secs,
        backlog_rate: made.rate(),
        cpu,
        waited,
    })
}

/// A deployment of the bench's own: a fresh database on the Postgres
/// server at `database_url` (the pool it was created through, to drop it
/// with), and settings on it and on a fresh key prefix of the Redis at
/// `redis_url` (1 partition, not a cluster). `name` tells them apart.
pub async fn fresh_deployment(
    redis_url: &str,
    database_url_: &str,
    name: &str,
) -> anyhow::Result<(sqlx::PgPool, String, stockhold::configuration::Settings)> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let db = format!("bench_{id}_{name}");
    let admin = sqlx::PgPool::connect(database_url_)
        .await
        .context("connecting to Postgres")?;
    sqlx::query(&format!(r#"CREATE DATABASE "{db}""#))
        .execute(&admin)
        .await?;
    let mut settings = stockhold::configuration::get_configuration()?;
    settings.redis.url = redis_url.to_owned();
    settings.redis.key_prefix = format!("bench{id}{name}");
    settings.redis.partitions = 1;
    settings.redis.cluster = false;
    settings.database.url = database_url(database_url_, &db)?;
    Ok((admin, db, settings))
}

/// Removes what `fresh_deployment` made.
pub async fn drop_deployment(
    admin: &sqlx::PgPool,
    db: &str,
    settings: &stockhold::configuration::Settings,
) -> anyhow::Result<()> {
    drop_prefix(&settings.redis.url, &settings.redis.key_prefix).await?;
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#))
        .execute(admin)
        .await?;
    Ok(())
}

/// Deletes every key under `prefix` (a bench's own) from the Redis at `url`.
pub async fn drop_prefix(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}:*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(10_000)
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query_async(&mut redis).await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// The service built on `rt`: on a thread outside both runtimes (the
/// building future is not Send), so that what it spawns lands on `rt`.
pub async fn build_on(
    rt: &tokio::runtime::Runtime,
    settings: &stockhold::configuration::Settings,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Application> {
    let handle = rt.handle().clone();
    let (s, stop) = (settings.clone(), shutdown.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(handle.block_on(Application::build(s, stop)));
    });
    rx.await.context("building the service")?
}

/// The service's runtime, like production's (a worker per core, for its
/// background tasks and group commit); the load generator keeps the one it
/// was started on (`--client-threads`).
pub fn service_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("stockhold")
        .build()
        .context("building the service's runtime")
}
