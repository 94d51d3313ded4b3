//! `cluster`: stockhold on a Redis Cluster (`redis.cluster = true`, the live
//! state in `--partitions` partitions spread over the masters), measured over
//! HTTP with baskets whose SKUs lie in 1, 2 or 4 partitions (the same number
//! of lines, so only the spread differs), each as reserve only and as
//! reserve + commit. Per phase and per master: Redis time per command from
//! `INFO commandstats` (after `CONFIG RESETSTAT`), and per script from a
//! sample of the slow log (threshold 0: the last `--slowlog-len` calls of the
//! phase, each named by its sha). Then, on a dedicated connection to one
//! master, the latency of a commit-sized write script with and without a
//! `WAIT 1 <timeout>` after it. Writes `cluster-<time>.md` and
//! `cluster-latest.md` into the output directory.
//!
//! Then the hot SKU: 1-line reserves of one unit of a single SKU set up with
//! 1 bucket, then with 4 (`--hot-buckets`): with 1 every call runs on the
//! master of the SKU's partition; with N on the masters of N partitions.

use crate::load::{self, histogram, Plan, Ran};
use crate::machine::{self, CpuSnap, CpuUse, Machine};
use crate::report::{ms, thousands};
use crate::suite::{database_url, info, seed_ledger};
use crate::targets::{Catalogue, Target};
use anyhow::Context;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stockhold::configuration::get_configuration;
use stockhold::domain::{Partition, Partitions};
use stockhold::startup::connect;
use tokio_util::sync::CancellationToken;

/// How long after start-up the service's after-rebuild reconcile passes
/// are over (they run 1, 3, 10 and 30 s after it: `SETTLE_LATE_AFTER` in
/// src/reconciler/rebuild.rs).
const SETTLE_PASSES: Duration = Duration::from_secs(33);

/// Basket rates the sizing table is worked out for, baskets/s.
pub const SIZING_RATES: [f64; 3] = [1_000.0, 5_000.0, 20_000.0];

/// Options of a cluster run (its command line).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Seed nodes of the cluster, comma separated
    /// (`scripts/services.sh up cluster`).
    #[arg(long, default_value = "redis://127.0.0.1:7001/")]
    pub redis_url: String,
    /// Partitions of the live state (`redis.partitions`).
    #[arg(long, default_value_t = 16)]
    pub partitions: u16,
    /// Partitions a basket's SKUs lie in, one phase each (1 first: the
    /// others are compared with it).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub spreads: Vec<usize>,
    /// Seconds each phase runs.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Baskets in flight.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// SKUs the baskets draw from.
    #[arg(long, default_value_t = 10_000)]
    pub skus: usize,
    /// Lines per basket.
    #[arg(long, default_value_t = 60)]
    pub lines: usize,
    /// Postgres server (a fresh database is created and dropped).
    #[arg(long, default_value = "postgres://stockhold@127.0.0.1:5433/postgres")]
    pub database_url: String,
    /// Names of the databases created start with this.
    #[arg(long, default_value = "bench_")]
    pub db_prefix: String,
    /// Where the report goes.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Baskets started at most per phase (a bound besides the time).
    #[arg(long, default_value_t = 200_000)]
    pub max_units: u64,
    /// Calls per master the slow log keeps for the per-script figures.
    #[arg(long, default_value_t = 4_096)]
    pub slowlog_len: u64,
    /// Hot-SKU phases: a single SKU spread over each of these numbers of
    /// buckets, reserved 1 unit at a time (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub hot_buckets: Vec<u16>,
    /// Rounds of the WAIT measurement (0 skips it).
    #[arg(long, default_value_t = 2_000)]
    pub wait_samples: u64,
    /// WAIT's timeout, ms.
    #[arg(long, default_value_t = 100)]
    pub wait_timeout_ms: u64,
    /// How busy a master's core may be in the sizing table (0-1).
    #[arg(long, default_value_t = 0.5)]
    pub utilisation: f64,
    /// A seconds-long run at small sizes (the test suite's).
    #[arg(long)]
    pub smoke: bool,
    /// Threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// The command line, for the report (set by main).
    #[arg(skip)]
    pub command: String,
}

/// What a phase's baskets do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Reserve,
    ReserveCommit,
    /// 1-line reserves of one hot SKU; the phase's `spread` is its buckets.
    HotReserve,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Reserve => "reserve",
            Kind::ReserveCommit => "reserve + commit",
            Kind::HotReserve => "1-line hot SKU (spread: its buckets)",
        }
    }
}

/// How long and how wide each phase runs.
fn phase_plan(opts: &Options) -> Plan {
    Plan {
        concurrency: opts.concurrency,
        duration: Duration::from_secs_f64(opts.seconds),
        max_units: opts.max_units,
        rate: None,
    }
}

/// The hot SKU of the phase with `buckets` buckets.
fn hot_sku(buckets: u16) -> String {
    format!("HOT-{buckets}")
}

/// One node of the cluster, from `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    /// host:port
    pub addr: String,
    pub master: bool,
    /// For a replica: its master's id.
    pub replica_of: Option<String>,
    pub slots: Vec<(u16, u16)>,
}

impl Node {
    fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// Parses `CLUSTER NODES`: every node that is not failed.
pub fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || f[2].contains("fail") || f[2].contains("noaddr") {
                return None;
            }
            let addr = f[1].split('@').next()?.to_owned();
            let master = f[2].split(',').any(|x| x == "master");
            let slots = f[8..]
                .iter()
                .filter(|s| !s.starts_with('['))
                .filter_map(|s| match s.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => s.parse().ok().map(|x| (x, x)),
                })
                .collect();
            Some(Node {
                id: f[0].to_owned(),
                addr,
                master,
                replica_of: (!master && f[3] != "-").then(|| f[3].to_owned()),
                slots,
            })
        })
        .collect()
}

/// The slot of partition `p`'s keys (`<prefix>:{pN}:…`).
pub fn partition_slot(p: Partition) -> u16 {
    redis::cluster_routing::get_slot(format!("{{{}}}", p.name()).as_bytes())
}

/// The SKUs of the catalogue's uniform part, by partition, with the
/// service's own mapping (`Partitions::of_sku`).
pub fn by_partition(cat: &Catalogue, partitions: Partitions) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); partitions.count() as usize];
    for i in 0..cat.uniform {
        out[partitions.of_sku(&cat.skus[i]).0 as usize].push(i);
    }
    out
}

/// A basket of `lines` distinct SKUs from `spread` distinct partitions
/// picked at random, the lines shared out as evenly as they go.
pub fn spread_basket(
    by_part: &[Vec<usize>],
    spread: usize,
    lines: usize,
    rng: &mut SmallRng,
) -> Vec<usize> {
    let parts = sample(rng, by_part.len(), spread);
    let mut out = Vec::with_capacity(lines);
    for (n, p) in parts.iter().enumerate() {
        let take = lines / spread + usize::from(n < lines % spread);
        let skus = &by_part[p];
        out.extend(sample(rng, skus.len(), take).iter().map(|i| skus[i]));
    }
    out
}

/// One `cmdstat_*` line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CmdStat {
    pub calls: u64,
    pub usec: u64,
}

/// `INFO commandstats` as command -> figures.
pub fn parse_commandstats(text: &str) -> BTreeMap<String, CmdStat> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| -> u64 {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0)
            };
            Some((
                name.to_owned(),
                CmdStat {
                    calls: field("calls"),
                    usec: field("usec"),
                },
            ))
        })
        .collect()
}

/// From a `SLOWLOG GET` reply: `(command, first argument, µs)` per entry.
pub fn parse_slowlog(reply: &Value) -> Vec<(String, String, u64)> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| {
            let Value::Array(f) = e else { return None };
            let Value::Int(us) = f.get(2)? else {
                return None;
            };
            let Value::Array(args) = f.get(3)? else {
                return None;
            };
            Some((
                text(args.first()?).to_lowercase(),
                args.get(1).map(text).unwrap_or_default(),
                *us as u64,
            ))
        })
        .collect()
}

/// sha -> script name for every script of `lua/` (loaded as the service
/// loads them: with `common.lua`, events on or off, or alone) and the
/// bench's own.
pub fn script_names() -> BTreeMap<String, String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../lua");
    let mut names = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let path = e.path();
            let (Some(stem), Some("lua")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let Ok(body) = std::fs::read_to_string(&path) else {
                continue;
            };
            for events in [true, false] {
                let with = redis::Script::new(&stockhold::engine::script_source(&body, events));
                names.insert(with.get_hash().to_owned(), stem.to_owned());
            }
            names.insert(
                redis::Script::new(&body).get_hash().to_owned(),
                stem.to_owned(),
            );
        }
    }
    let plain = redis::Script::new(WRITE_SCRIPT);
    names.insert(plain.get_hash().to_owned(), "bench plain_reserve".into());
    names
}

const WRITE_SCRIPT: &str = include_str!("../lua/plain_reserve.lua");

/// One master's figures in a phase.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    pub cmds: BTreeMap<String, CmdStat>,
    /// Script (or command) name -> (calls sampled, µs summed), from the
    /// slow log's last entries.
    pub sampled: BTreeMap<String, (u64, u64)>,
}

impl ShardStats {
    /// EVALSHA's figures. Every call on a basket's path is a script, and
    /// `INFO commandstats` counts the commands a script calls once more
    /// under their own names (inside the script's time), so the scripts'
    /// time alone is the Redis time of the baskets.
    fn evalsha(&self) -> CmdStat {
        self.cmds.get("evalsha").copied().unwrap_or_default()
    }
}

/// One measured phase.
pub struct ClusterPhase {
    pub kind: Kind,
    pub spread: usize,
    pub ran: Ran,
    pub cpu: CpuUse,
    /// Per master, in the order of `Cluster::masters`.
    pub shards: Vec<ShardStats>,
}

impl ClusterPhase {
    /// Redis µs of script calls per basket, summed over the masters.
    pub fn redis_us_per_basket(&self) -> f64 {
        let us: u64 = self.shards.iter().map(|s| s.evalsha().usec).sum();
        us as f64 / self.ran.rec.units.max(1) as f64
    }

    fn evalsha_per_basket(&self) -> f64 {
        let calls: u64 = self.shards.iter().map(|s| s.evalsha().calls).sum();
        calls as f64 / self.ran.rec.units.max(1) as f64
    }
}

/// The WAIT measurement.
pub struct WaitRun {
    pub master: String,
    pub replicas: String,
    pub timeout_ms: u64,
    pub samples: u64,
    /// Counters the script touches per call.
    pub lines: usize,
    /// The write script alone.
    pub plain: Histogram<u64>,
    /// The script, then `WAIT` after its answer: both round trips.
    pub with_wait: Histogram<u64>,
    /// The `WAIT` of those pairs alone.
    pub wait_alone: Histogram<u64>,
    /// The script and `WAIT` pipelined: one round trip.
    pub pipelined: Histogram<u64>,
    /// WAITs that returned before a replica acknowledged (timed out).
    pub unacked: u64,
    /// Redis µs per call of the script (INFO commandstats on that master).
    pub script_us: Option<f64>,
}

/// The cluster as found.
pub struct Cluster {
    pub masters: Vec<Node>,
    pub replicas: Vec<Node>,
    pub pids: Vec<u32>,
    pub version: String,
    pub persistence: String,
}

impl Cluster {
    fn replica_of(&self, master: &Node) -> String {
        let r: Vec<&str> = self
            .replicas
            .iter()
            .filter(|r| r.replica_of.as_deref() == Some(&master.id))
            .map(|r| r.addr.as_str())
            .collect();
        if r.is_empty() {
            "none".into()
        } else {
            r.join(", ")
        }
    }

    /// Index of the master serving `slot`.
    fn master_of(&self, slot: u16) -> Option<usize> {
        self.masters.iter().position(|m| m.serves(slot))
    }
}

async fn node_conn(addr: &str) -> anyhow::Result<MultiplexedConnection> {
    redis::Client::open(format!("redis://{addr}/"))?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to cluster node {addr}"))
}

async fn discover(seeds: &str) -> anyhow::Result<Cluster> {
    let seed = seeds
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .context("--redis-url names no seed node")?;
    let mut conn = redis::Client::open(seed)?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("connecting to {seed}"))?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .context("CLUSTER NODES (is this a Redis Cluster?)")?;
    let nodes = parse_nodes(&text);
    let (mut masters, replicas): (Vec<Node>, Vec<Node>) = nodes.into_iter().partition(|n| n.master);
    masters.retain(|m| !m.slots.is_empty());
    masters.sort_by(|a, b| a.slots.first().cmp(&b.slots.first()));
    anyhow::ensure!(!masters.is_empty(), "the cluster has no master with slots");
    let mut pids = Vec::new();
    let mut version = String::new();
    let mut persistence = String::new();
    for n in masters.iter().chain(&replicas) {
        let mut c = node_conn(&n.addr).await?;
        let server = info(&mut c, "server").await?;
        if let Some(pid) = server.get("process_id").and_then(|p| p.parse().ok()) {
            pids.push(pid);
        }
        if version.is_empty() {
            version = server.get("redis_version").cloned().unwrap_or_default();
            let p = info(&mut c, "persistence").await?;
            let get = |name: &str| {
                let mut c = c.clone();
                let name = name.to_owned();
                async move {
                    redis::cmd("CONFIG")
                        .arg("GET")
                        .arg(&name)
                        .query_async::<Vec<String>>(&mut c)
                        .await
                        .ok()
                        .and_then(|v| v.get(1).cloned())
                        .unwrap_or_else(|| "?".into())
                }
            };
            persistence = format!(
                "appendonly {}, appendfsync {}, cluster-node-timeout {}, cluster-require-full-coverage {}",
                if p.get("aof_enabled").is_some_and(|v| v == "1") {
                    "yes"
                } else {
                    "no"
                },
                get("appendfsync").await,
                get("cluster-node-timeout").await,
                get("cluster-require-full-coverage").await,
            );
        }
    }
    Ok(Cluster {
        masters,
        replicas,
        pids,
        version,
        persistence,
    })
}

/// Deletes every key matching `pattern` on every master, one key per
/// UNLINK (keys of different slots cannot share a call).
async fn delete_matching(conns: &mut [MultiplexedConnection], pattern: &str) -> anyhow::Result<()> {
    for conn in conns.iter_mut() {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(10_000)
                .query_async(conn)
                .await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("UNLINK").arg(k).ignore();
                }
                let _: () = pipe.query_async(conn).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    Ok(())
}

/// Slow-log settings of a master, to put back after the run.
struct SlowlogConfig {
    threshold: String,
    len: String,
}

async fn config_get(conn: &mut MultiplexedConnection, name: &str) -> anyhow::Result<String> {
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query_async(conn)
        .await?;
    v.get(1).cloned().context("CONFIG GET answered nothing")
}

async fn config_set(
    conn: &mut MultiplexedConnection,
    name: &str,
    value: &str,
) -> anyhow::Result<()> {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query_async(conn)
        .await?;
    Ok(())
}

/// Resets the masters' counters and starts logging every call.
async fn start_stats(conns: &mut [MultiplexedConnection], slowlog_len: u64) -> anyhow::Result<()> {
    for c in conns.iter_mut() {
        config_set(c, "slowlog-max-len", &slowlog_len.to_string()).await?;
        config_set(c, "slowlog-log-slower-than", "0").await?;
        let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(c).await?;
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(c).await?;
    }
    Ok(())
}

/// Reads the masters' counters and slow logs, and stops the logging.
async fn read_stats(
    conns: &mut [MultiplexedConnection],
    names: &BTreeMap<String, String>,
    slowlog_len: u64,
) -> anyhow::Result<Vec<ShardStats>> {
    let mut out = Vec::new();
    for c in conns.iter_mut() {
        let text: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(c)
            .await?;
        // Stop logging before reading the log, so the read is not logged.
        config_set(c, "slowlog-log-slower-than", "-1").await?;
        let log: Value = redis::cmd("SLOWLOG")
            .arg("GET")
            .arg(slowlog_len)
            .query_async(c)
            .await?;
        let mut sampled: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (cmd, arg, us) in parse_slowlog(&log) {
            let name = match cmd.as_str() {
                "evalsha" => names
                    .get(&arg)
                    .cloned()
                    .unwrap_or_else(|| format!("sha {}", &arg[..arg.len().min(8)])),
                "config" | "slowlog" | "info" => continue,
                _ => cmd,
            };
            let e = sampled.entry(name).or_default();
            e.0 += 1;
            e.1 += us;
        }
        out.push(ShardStats {
            cmds: parse_commandstats(&text),
            sampled,
        });
    }
    Ok(out)
}

/// Everything a cluster run produced.
pub struct Run {
    pub options: Options,
    pub machine: Machine,
    pub started: chrono::DateTime<chrono::Utc>,
    pub cluster: Cluster,
    /// Partitions per master, in the order of `cluster.masters`.
    pub layout: Vec<Vec<u16>>,
    pub phases: Vec<ClusterPhase>,
    pub wait: Option<WaitRun>,
    pub service: String,
}

/// The whole cluster run.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let started = chrono::Utc::now();
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let prefix = format!("bench{id}");
    let wait_tag = format!("{{bench{id}w}}");
    let db = format!("{}{id}", opts.db_prefix);
    let partitions = Partitions::new(opts.partitions);

    let cluster = discover(&opts.redis_url).await?;
    let mut conns = Vec::new();
    for m in &cluster.masters {
        conns.push(node_conn(&m.addr).await?);
    }
    let mut layout = vec![Vec::new(); cluster.masters.len()];
    for p in partitions.all() {
        let m = cluster
            .master_of(partition_slot(p))
            .with_context(|| format!("no master serves the slot of partition {p}"))?;
        layout[m].push(p.0);
    }
    let names = script_names();
    let mut slowlog = Vec::new();
    for c in conns.iter_mut() {
        slowlog.push(SlowlogConfig {
            threshold: config_get(c, "slowlog-log-slower-than").await?,
            len: config_get(c, "slowlog-max-len").await?,
        });
    }

    let admin = sqlx::PgPool::connect(&opts.database_url)
        .await
        .context("connecting to Postgres")?;
    let pg_row: (String, String, String, i32) = sqlx::query_as(
        "SELECT current_setting('server_version'), current_setting('fsync'),
                current_setting('synchronous_commit'), pg_backend_pid()",
    )
    .fetch_one(&admin)
    .await?;
    let postmaster = machine::parent_of(pg_row.3 as u32);
    let mut machine = Machine::read(
        format!(
            "Redis {} Cluster: {} masters, {} replicas ({})",
            cluster.version,
            cluster.masters.len(),
            cluster.replicas.len(),
            cluster.persistence
        ),
        format!(
            "PostgreSQL {} (fsync {}, synchronous_commit {})",
            pg_row.0, pg_row.1, pg_row.2
        ),
    );
    machine.build = machine::service_build();
    eprintln!(
        "stockhold-bench cluster: {} cores, load {}; {} masters, {} partitions",
        machine.cores,
        machine.load_before,
        cluster.masters.len(),
        opts.partitions
    );

    let cat = Arc::new(Catalogue::new(opts.skus));
    let by_part = Arc::new(by_partition(&cat, partitions));
    let smallest = by_part.iter().map(Vec::len).min().unwrap_or(0);
    let max_spread = opts.spreads.iter().copied().max().unwrap_or(1);
    anyhow::ensure!(
        max_spread <= opts.partitions as usize,
        "a spread of {max_spread} needs at least {max_spread} partitions"
    );
    let min_spread = opts.spreads.iter().copied().min().unwrap_or(1);
    anyhow::ensure!(
        smallest >= opts.lines.div_ceil(min_spread),
        "the smallest partition has {smallest} SKUs, fewer than a basket's {} lines in it: raise --skus",
        opts.lines.div_ceil(min_spread)
    );

    sqlx::query(&format!(r#"CREATE DATABASE "{db}""#))
        .execute(&admin)
        .await?;
    let mut settings = get_configuration()?;
    settings.application.host = "127.0.0.1".into();
    settings.application.port = 0;
    settings.redis.url = opts.redis_url.clone();
    settings.redis.cluster = true;
    settings.redis.partitions = opts.partitions;
    settings.redis.key_prefix = prefix.clone();
    settings.database.url = database_url(&opts.database_url, &db)?;

    let shutdown = CancellationToken::new();
    let service_rt = crate::suite::service_runtime()?;
    let mut app_task = None;
    let result = async {
        let setup = Instant::now();
        let ledger_only = connect(&settings).await?;
        seed_ledger(&ledger_only, &cat).await?;
        drop(ledger_only);
        let app = crate::suite::build_on(&service_rt, &settings, &shutdown).await?;
        let built = Instant::now();
        let base = format!("http://127.0.0.1:{}", app.port());
        let workers = app.workers();
        app_task = Some(service_rt.spawn(app.run_until_stopped()));
        let service = format!(
            "stockhold in this process (Application::build on 127.0.0.1, port 0, on a runtime of its own; {workers} actix workers, \
             one cluster connection, {} partitions, Postgres pool {}), key prefix and database of its own",
            opts.partitions, settings.database.max_connections
        );
        eprintln!(
            "set up {} SKUs in ledger and cluster in {:.1} s; service on {base}",
            opts.skus,
            setup.elapsed().as_secs_f64()
        );
        // The service reconciles the partitions it rebuilt 1, 3, 10 and 30 s
        // after start-up (a pass of tens of ms of Redis time on each
        // master): let them be over before measuring.
        if !opts.smoke {
            let bar = load::bar("after-rebuild reconcile passes", SETTLE_PASSES);
            bar.enable_steady_tick(Duration::from_millis(250));
            bar.set_message("waiting for them to be over");
            tokio::time::sleep_until((built + SETTLE_PASSES).into()).await;
            bar.finish_with_message("over");
        }
        let http = Arc::new(Target::Http {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(opts.concurrency)
                .timeout(Duration::from_secs(30))
                .build()?,
            base,
            key: "dev-storefront-key".into(),
        });

        let mut phases = Vec::new();
        let mut seed = 11u64;
        for kind in [Kind::Reserve, Kind::ReserveCommit] {
            for &spread in &opts.spreads {
                seed += 1000;
                start_stats(&mut conns, opts.slowlog_len).await?;
                let cpu = CpuSnap::take();
                let plan = phase_plan(&opts);
                let title = format!("{}, {spread} partition(s)", kind.label());
                let lines = opts.lines;
                let ttl = match kind {
                    Kind::ReserveCommit => 300,
                    _ => 3_600,
                };
                let ran = load::run(&title, &plan, |i, pacer, mut rec| {
                    let (http, cat, by_part) = (http.clone(), cat.clone(), by_part.clone());
                    async move {
                        let mut rng = SmallRng::seed_from_u64(seed + i as u64);
                        while let Some(start) = pacer.next().await {
                            let idx = spread_basket(&by_part, spread, lines, &mut rng);
                            let commit = kind == Kind::ReserveCommit;
                            if http.basket(&cat, &idx, commit, ttl, &mut rec).await {
                                rec.unit_done(start, idx.len());
                            }
                        }
                        rec
                    }
                })
                .await;
                let cpu = cpu.since_pids(&cluster.pids, postmaster);
                let shards = read_stats(&mut conns, &names, opts.slowlog_len).await?;
                phases.push(ClusterPhase {
                    kind,
                    spread,
                    ran,
                    cpu,
                    shards,
                });
            }
        }
        if !opts.hot_buckets.is_empty() {
            let Target::Http { client, base, .. } = &*http else {
                unreachable!("the cluster run measures over HTTP")
            };
            for &n in &opts.hot_buckets {
                let res = client
                    .put(format!("{base}/v1/skus/{}", hot_sku(n)))
                    .bearer_auth("dev-admin-key")
                    .json(&serde_json::json!({ "on_hand": crate::suite::ON_HAND, "buckets": n }))
                    .send()
                    .await?;
                anyhow::ensure!(
                    res.status().is_success(),
                    "setting up {}: {}",
                    hot_sku(n),
                    res.text().await.unwrap_or_default()
                );
            }
            // The balancer (once a second) spreads the units over the buckets.
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        for &buckets in &opts.hot_buckets {
            start_stats(&mut conns, opts.slowlog_len).await?;
            let cpu = CpuSnap::take();
            let plan = phase_plan(&opts);
            let title = format!("1-line hot SKU, {buckets} bucket(s)");
            let sku = stockhold::domain::Sku::parse(&hot_sku(buckets)).map_err(anyhow::Error::msg)?;
            let ran = load::run(&title, &plan, |_, pacer, mut rec| {
                let (http, sku) = (http.clone(), sku.clone());
                async move {
                    while let Some(start) = pacer.next().await {
                        if http.reserve_one(&sku, false, 3_600, &mut rec).await {
                            rec.unit_done(start, 1);
                        }
                    }
                    rec
                }
            })
            .await;
            let cpu = cpu.since_pids(&cluster.pids, postmaster);
            let shards = read_stats(&mut conns, &names, opts.slowlog_len).await?;
            phases.push(ClusterPhase {
                kind: Kind::HotReserve,
                spread: usize::from(buckets),
                ran,
                cpu,
                shards,
            });
        }
        let wait = if opts.wait_samples > 0 {
            Some(measure_wait(&cluster, &conns, &wait_tag, &opts).await?)
        } else {
            None
        };
        anyhow::Ok((phases, wait, service))
    }
    .await;

    // Clean up whatever happened above.
    shutdown.cancel();
    if let Some(task) = app_task {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    service_rt.shutdown_background();
    sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{db}" WITH (FORCE)"#))
        .execute(&admin)
        .await?;
    for (c, s) in conns.iter_mut().zip(&slowlog) {
        config_set(c, "slowlog-log-slower-than", &s.threshold).await?;
        config_set(c, "slowlog-max-len", &s.len).await?;
        let _: () = redis::cmd("SLOWLOG").arg("RESET").query_async(c).await?;
    }
    delete_matching(&mut conns, &format!("{prefix}:*")).await?;
    delete_matching(&mut conns, &format!("{wait_tag}:*")).await?;
    let (phases, wait, service) = result?;

    machine.load_after = machine::load_average();
    machine.top_after = machine::top();
    let run = Run {
        options: opts,
        machine,
        started,
        cluster,
        layout,
        phases,
        wait,
        service,
    };
    std::fs::create_dir_all(&run.options.out)?;
    let stamp = run.started.format("%Y%m%d-%H%M%S").to_string();
    let text = markdown(&run);
    let path = run.options.out.join(format!("cluster-{stamp}.md"));
    std::fs::write(&path, &text)?;
    std::fs::write(run.options.out.join("cluster-latest.md"), &text)?;
    eprintln!("wrote {}", path.display());
    print!("{}", summary(&run));
    Ok(())
}

/// On a dedicated connection to the master of `tag`'s slot, one call at a
/// time: a write script of a commit's size (the bench's plain reserve: MGET
/// of `lines` counters, DECRBY each, HSET of a record; its effects replicate
/// like a commit's), alone, then followed by `WAIT 1 <timeout>` (two round
/// trips, as a service would send them), then the two pipelined. The three
/// kinds take turns, so each sees the same machine.
async fn measure_wait(
    cluster: &Cluster,
    conns: &[MultiplexedConnection],
    tag: &str,
    opts: &Options,
) -> anyhow::Result<WaitRun> {
    let m = cluster
        .master_of(redis::cluster_routing::get_slot(tag.as_bytes()))
        .context("no master serves the WAIT measurement's slot")?;
    let master = &cluster.masters[m];
    // Its own connection: WAIT blocks the connection it is sent on.
    let mut conn = node_conn(&master.addr).await?;
    let mut stats = conns[m].clone();
    let repl = info(&mut conn, "replication").await?;
    anyhow::ensure!(
        repl.get("connected_slaves").is_some_and(|v| v != "0"),
        "master {} has no connected replica: WAIT would always time out",
        master.addr
    );
    let counters: Vec<String> = (0..1_000).map(|i| format!("{tag}:sku:{i}")).collect();
    let mut mset = redis::cmd("MSET");
    for k in &counters {
        mset.arg(k).arg(crate::suite::ON_HAND);
    }
    let _: () = mset.query_async(&mut conn).await?;
    let script = redis::Script::new(WRITE_SCRIPT);
    let _: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(WRITE_SCRIPT)
        .query_async(&mut conn)
        .await?;
    let lines = opts.lines.min(counters.len());
    let mut rng = SmallRng::seed_from_u64(4242);
    let mut n = 0u64;
    let mut call = |rng: &mut SmallRng| {
        n += 1;
        let mut c = redis::cmd("EVALSHA");
        c.arg(script.get_hash())
            .arg(lines + 1)
            .arg(format!("{tag}:hold:{n}"));
        for i in sample(rng, counters.len(), lines).iter() {
            c.arg(&counters[i]);
        }
        for _ in 0..lines {
            c.arg(1);
        }
        c
    };
    let wait = || {
        let mut w = redis::cmd("WAIT");
        w.arg(1).arg(opts.wait_timeout_ms);
        w
    };
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut stats)
        .await?;
    let (mut plain, mut with_wait, mut wait_alone, mut pipelined) =
        (histogram(), histogram(), histogram(), histogram());
    let mut unacked = 0;
    let bar = load::bar("WAIT 1: script alone / + WAIT", Duration::from_secs(1));
    bar.set_length(opts.wait_samples);
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut done = 0;
    while done < opts.wait_samples && Instant::now() < deadline {
        let t = Instant::now();
        let _: i64 = call(&mut rng).query_async(&mut conn).await?;
        plain.saturating_record(t.elapsed().as_micros() as u64);

        let t = Instant::now();
        let _: i64 = call(&mut rng).query_async(&mut conn).await?;
        let t2 = Instant::now();
        let acked: i64 = wait().query_async(&mut conn).await?;
        wait_alone.saturating_record(t2.elapsed().as_micros() as u64);
        with_wait.saturating_record(t.elapsed().as_micros() as u64);
        unacked += u64::from(acked < 1);

        let t = Instant::now();
        let mut pipe = redis::pipe();
        pipe.add_command(call(&mut rng)).add_command(wait());
        let (_, acked): (i64, i64) = pipe.query_async(&mut conn).await?;
        pipelined.saturating_record(t.elapsed().as_micros() as u64);
        unacked += u64::from(acked < 1);
        done += 1;
        bar.set_position(done);
    }
    bar.finish();
    let cmds = parse_commandstats(
        &redis::cmd("INFO")
            .arg("commandstats")
            .query_async::<String>(&mut stats)
            .await?,
    );
    let script_us = cmds
        .get("evalsha")
        .filter(|c| c.calls > 0)
        .map(|c| c.usec as f64 / c.calls as f64);
    Ok(WaitRun {
        master: master.addr.clone(),
        replicas: cluster.replica_of(master),
        timeout_ms: opts.wait_timeout_ms,
        samples: done,
        lines,
        plain,
        with_wait,
        wait_alone,
        pipelined,
        unacked,
        script_us,
    })
}

fn q(h: &Histogram<u64>, quantile: f64) -> String {
    ms(h.value_at_quantile(quantile))
}

fn phase_of(run: &Run, kind: Kind, spread: usize) -> Option<&ClusterPhase> {
    run.phases
        .iter()
        .find(|p| p.kind == kind && p.spread == spread)
}

/// Masters a rate of `rate` baskets/s needs when each costs `us_per_basket`
/// µs of Redis time in all and a master's core may be busy `utilisation` of
/// the time (the load spread evenly over the masters).
pub fn masters_needed(rate: f64, us_per_basket: f64, utilisation: f64) -> u64 {
    (rate * us_per_basket / (utilisation * 1e6)).ceil().max(1.0) as u64
}

fn results_table(run: &Run) -> String {
    let mut s = String::from(
        "| baskets | partitions per basket (hot SKU: buckets) | baskets/s | p50 ms | p99 ms | p99.9 ms | errors | EVALSHA per basket | Redis µs per basket (EVALSHA, all masters) | CPU cores: all / bench+service / Redis (6 nodes) / Postgres / other |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for p in &run.phases {
        let r = &p.ran;
        let c = &p.cpu;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} |",
            p.kind.label(),
            p.spread,
            thousands(r.rate()),
            q(&r.rec.unit, 0.5),
            q(&r.rec.unit, 0.99),
            q(&r.rec.unit, 0.999),
            r.rec.error_count(),
            p.evalsha_per_basket(),
            p.redis_us_per_basket(),
            c.machine,
            c.this,
            c.redis,
            c.postgres,
            c.other
        );
    }
    s
}

fn ratio_table(run: &Run) -> String {
    let mut s = String::from(
        "| baskets | partitions per basket (hot SKU: buckets) | throughput ÷ 1-partition | p50 ÷ | p99 ÷ | Redis time per basket ÷ |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for p in &run.phases {
        let Some(one) = phase_of(run, p.kind, 1) else {
            continue;
        };
        if p.spread == 1 {
            continue;
        }
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.2}×", a / b)
            } else {
                "–".into()
            }
        };
        let lat = |ph: &ClusterPhase, qu: f64| ph.ran.rec.unit.value_at_quantile(qu) as f64;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            p.kind.label(),
            p.spread,
            ratio(p.ran.rate(), one.ran.rate()),
            ratio(lat(p, 0.5), lat(one, 0.5)),
            ratio(lat(p, 0.99), lat(one, 0.99)),
            ratio(p.redis_us_per_basket(), one.redis_us_per_basket()),
        );
    }
    s
}

fn shard_table(run: &Run) -> String {
    let mut s = String::from(
        "| baskets | partitions per basket (hot SKU: buckets) | master | EVALSHA calls | µs per EVALSHA | Redis busy with scripts |\n\
         | --- | ---: | --- | ---: | ---: | ---: |\n",
    );
    for p in &run.phases {
        let secs = p.ran.elapsed.as_secs_f64().max(1e-3);
        for (m, st) in run.cluster.masters.iter().zip(&p.shards) {
            let ev = st.evalsha();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.1} | {:.0} % |",
                p.kind.label(),
                p.spread,
                m.addr,
                thousands(ev.calls as f64),
                ev.usec as f64 / ev.calls.max(1) as f64,
                100.0 * ev.usec as f64 / 1e6 / secs
            );
        }
    }
    s
}

fn script_table(run: &Run) -> String {
    let mut s = String::from(
        "| baskets | partitions per basket (hot SKU: buckets) | script or command | calls sampled (all masters) | µs per call | per master (µs per call, calls) |\n\
         | --- | ---: | --- | ---: | ---: | --- |\n",
    );
    for p in &run.phases {
        let mut all: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for st in &p.shards {
            for (name, (c, u)) in &st.sampled {
                let e = all.entry(name).or_default();
                e.0 += c;
                e.1 += u;
            }
        }
        for (name, (c, u)) in all {
            let per_master: Vec<String> = run
                .cluster
                .masters
                .iter()
                .zip(&p.shards)
                .filter_map(|(m, st)| {
                    let (c, u) = st.sampled.get(name)?;
                    let port = m.addr.rsplit(':').next().unwrap_or(&m.addr);
                    Some(format!(":{port} {:.1} ({c})", *u as f64 / *c as f64))
                })
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {name} | {} | {:.1} | {} |",
                p.kind.label(),
                p.spread,
                thousands(c as f64),
                u as f64 / c.max(1) as f64,
                per_master.join("; ")
            );
        }
    }
    s
}

fn wait_section(w: &WaitRun) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "On a dedicated connection to master {} (replica {}), one call at a time, {} rounds; each round makes one call of each kind in turn. \
         The script is the bench's plain reserve (`bench/lua/plain_reserve.lua`: MGET of {} counters, DECRBY each, HSET of a record; \
         its effects replicate like a commit's){}. WAIT's timeout: {} ms.\n",
        w.master,
        w.replicas,
        w.samples,
        w.lines,
        w.script_us
            .map(|u| format!(", {u:.0} µs of Redis time per call on that master"))
            .unwrap_or_default(),
        w.timeout_ms
    );
    s.push_str(
        "| call | p50 ms | p99 ms | p99.9 ms | max ms |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for (label, h) in [
        ("script alone", &w.plain),
        ("script, then WAIT 1 (two round trips)", &w.with_wait),
        ("the WAIT 1 of those", &w.wait_alone),
        ("script + WAIT 1 pipelined (one round trip)", &w.pipelined),
    ] {
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} | {} |",
            q(h, 0.5),
            q(h, 0.99),
            q(h, 0.999),
            ms(h.max())
        );
    }
    let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5) as f64 / 1000.0;
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    let _ = writeln!(
        s,
        "\nWAIT adds {:.2} ms at p50 and {:.2} ms at p99 (two round trips; pipelined {:.2} / {:.2} ms); {} of {} WAITs returned before a replica acknowledged ({} ms timeout).",
        p50(&w.with_wait) - p50(&w.plain),
        p99(&w.with_wait) - p99(&w.plain),
        p50(&w.pipelined) - p50(&w.plain),
        p99(&w.pipelined) - p99(&w.plain),
        w.unacked,
        2 * w.samples,
        w.timeout_ms
    );
    s
}

fn sizing_table(run: &Run) -> String {
    let u = run.options.utilisation;
    let mut s = format!(
        "Masters needed for a rate of 60-line reserve + commit baskets, from the Redis time per basket measured above (all masters summed), \
         with each master's core at most {:.0} % busy with commands and the partitions spread evenly over the masters:\n\n",
        u * 100.0
    );
    s.push_str("| partitions per basket | Redis µs per basket |");
    for r in SIZING_RATES {
        let _ = write!(s, " {} /s |", thousands(r));
    }
    s.push_str("\n| ---: | ---: |");
    for _ in SIZING_RATES {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for p in run.phases.iter().filter(|p| p.kind == Kind::ReserveCommit) {
        let t = p.redis_us_per_basket();
        let _ = write!(s, "| {} | {:.0} |", p.spread, t);
        for r in SIZING_RATES {
            let _ = write!(s, " {} |", masters_needed(r, t, u));
        }
        s.push('\n');
    }
    s
}

/// The report's tables, as printed at the end of a run.
pub fn summary(run: &Run) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n{}", results_table(run));
    let _ = writeln!(s, "{}", ratio_table(run));
    let _ = writeln!(s, "{}", sizing_table(run));
    if let Some(w) = &run.wait {
        let _ = writeln!(s, "{}", wait_section(w));
    }
    s
}

/// The whole markdown report.
pub fn markdown(run: &Run) -> String {
    let o = &run.options;
    let m = &run.machine;
    let mut s = crate::report::head(
        &format!(
            "stockhold on a Redis Cluster, {}",
            run.started.format("%Y-%m-%d %H:%M UTC")
        ),
        &o.command,
        o.smoke,
        &run.machine,
        &run.service,
    );
    let _ = writeln!(
        s,
        "- load generator: this process, {} baskets in flight, {} s per phase (at most {} baskets), {} SKUs, {} lines per basket, every SKU starting with 10^9 units",
        o.concurrency, o.seconds, thousands(o.max_units as f64), o.skus, o.lines
    );
    s.push_str("- everything (service, load generator, the six Redis nodes, Postgres) shares the same cores; loopback only\n\n");
    s.push_str("## Machine state\n\n");
    let _ = writeln!(
        s,
        "- load average before the run: `{}`; after: `{}`\n\n`top` before the run:\n\n```\n{}\n```\n",
        m.load_before, m.load_after, m.top_before
    );
    s.push_str("## Cluster layout\n\n| master | slots | replica | partitions |\n| --- | --- | --- | --- |\n");
    for (master, parts) in run.cluster.masters.iter().zip(&run.layout) {
        let slots: Vec<String> = master
            .slots
            .iter()
            .map(|(a, b)| format!("{a}-{b}"))
            .collect();
        let parts: Vec<String> = parts.iter().map(|p| format!("p{p}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} ({}) |",
            master.addr,
            slots.join(", "),
            run.cluster.replica_of(master),
            parts.len(),
            parts.join(" ")
        );
    }
    s.push_str("\n## Results (over HTTP)\n\n");
    let _ = writeln!(
        s,
        "Each phase: {}-line baskets whose SKUs lie in N partitions picked at random per basket (lines shared evenly; SKU → partition by the service's own `Partitions::of_sku`). \
         Latency: of a basket (reserve, or reserve + commit; a commit is in Postgres before its 201). \
         Redis µs per basket: `INFO commandstats` of every master after `CONFIG RESETSTAT` at the phase's start, EVALSHA's time summed over the masters, divided by the baskets done \
         (every call on a basket's path is a script; commandstats also counts the commands a script calls, under their own names and inside the script's time, so they are not added again; \
         includes the background tasks' scripts: reaper, leases). The slow log logged every call during the phases (threshold 0), which costs Redis a little after each call's timing, not in it.\n",
        o.lines
    );
    s.push_str(&results_table(run));
    s.push_str("\n### Cost of a cross-partition basket (same run)\n\n");
    s.push_str(&ratio_table(run));
    s.push_str("\n### Redis time per call, per master\n\n`INFO commandstats` per master (`usec` ÷ `calls` of EVALSHA); \"Redis busy\" is the scripts' time over the phase's length.\n\n");
    s.push_str(&shard_table(run));
    let _ = writeln!(
        s,
        "\n### Redis time per script\n\nFrom each master's slow log (the last {} calls of the phase on that master, each EVALSHA named by its sha; a sample, not every call). \
         Plain commands (hmget, zadd, …) are mostly those the scripts call, whose time is inside the script's:\n",
        o.slowlog_len
    );
    s.push_str(&script_table(run));
    s.push_str("\n## WAIT for a replica after a commit-sized write\n\n");
    match &run.wait {
        Some(w) => s.push_str(&wait_section(w)),
        None => s.push_str("Not measured (`--wait-samples 0`).\n"),
    }
    s.push_str("\n## Sizing\n\n");
    s.push_str(&sizing_table(run));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baskets_lie_in_exactly_the_spread_asked_for() {
        let cat = Catalogue::new(2_000);
        let parts = Partitions::new(16);
        let by_part = by_partition(&cat, parts);
        let mut rng = SmallRng::seed_from_u64(1);
        for spread in [1, 2, 4] {
            for _ in 0..50 {
                let b = spread_basket(&by_part, spread, 60, &mut rng);
                assert_eq!(b.len(), 60);
                let mut distinct = b.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), 60, "a SKU twice in {b:?}");
                let used: std::collections::BTreeSet<Partition> =
                    b.iter().map(|&i| parts.of_sku(&cat.skus[i])).collect();
                assert_eq!(used.len(), spread);
            }
        }
    }

    #[test]
    fn cluster_nodes_are_parsed() {
        let text = "\
a1 127.0.0.1:7101@17101 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7102@17102 master - 0 1 2 connected 5461-10922 [5461->-x]
c3 127.0.0.1:7104@17104 slave a1 0 1 1 connected
d4 127.0.0.1:7105@17105 master,fail - 0 1 3 disconnected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 3);
        assert!(nodes[0].master && nodes[0].serves(0) && !nodes[0].serves(5461));
        assert_eq!(nodes[1].slots, vec![(5461, 10922)]);
        assert_eq!(nodes[2].replica_of.as_deref(), Some("a1"));
        assert_eq!(nodes[2].addr, "127.0.0.1:7104");
    }

    #[test]
    fn commandstats_and_slowlog_are_parsed() {
        let stats = parse_commandstats(
            "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=1500,usec_per_call=150.00,rejected_calls=0,failed_calls=0\r\ncmdstat_info:calls=2,usec=40,usec_per_call=20.00\r\n",
        );
        assert_eq!(
            stats["evalsha"],
            CmdStat {
                calls: 10,
                usec: 1500
            }
        );
        assert_eq!(stats["info"].calls, 2);
        let entry = |us: i64, args: &[&str]| {
            Value::Array(vec![
                Value::Int(1),
                Value::Int(0),
                Value::Int(us),
                Value::Array(
                    args.iter()
                        .map(|a| Value::BulkString(a.as_bytes().to_vec()))
                        .collect(),
                ),
            ])
        };
        let log = Value::Array(vec![
            entry(120, &["EVALSHA", "abc", "3"]),
            entry(4, &["get", "k"]),
        ]);
        assert_eq!(
            parse_slowlog(&log),
            vec![
                ("evalsha".into(), "abc".into(), 120),
                ("get".into(), "k".into(), 4)
            ]
        );
    }

    #[test]
    fn the_service_scripts_are_named() {
        let names = script_names();
        assert!(names.values().any(|n| n == "reserve"), "{names:?}");
        assert!(names.values().any(|n| n == "stage"), "{names:?}");
    }

    #[test]
    fn masters_needed_rounds_up() {
        // 1 000 baskets/s × 500 µs = 0.5 s of Redis a second: one core at 50 %.
        assert_eq!(masters_needed(1_000.0, 500.0, 0.5), 1);
        assert_eq!(masters_needed(1_001.0, 500.0, 0.5), 2);
        assert_eq!(masters_needed(20_000.0, 500.0, 0.5), 20);
    }
}
