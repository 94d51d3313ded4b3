//! Child processes of a test's own: each is SIGKILLed (std's `Child::kill`)
//! and reaped when dropped, prints the tail of its log when dropped during a
//! failing test, and removes its data directory.

use rand::Rng;
use sqlx::{Connection, Executor, PgConnection};
use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Postgres 15 server binaries (Debian keeps them off PATH).
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// Log lines shown when a test fails.
const TAIL_LINES: usize = 40;

/// A port nobody listens on. Picked below the kernel's ephemeral range
/// (32768–60999) so that the load's own outgoing connections cannot take
/// it between a kill and the restart on the same port.
pub fn free_port() -> u16 {
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(what: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "stockhold-chaos-{what}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&path).expect("create a temp dir");
        TempDir { path }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // STOCKHOLD_CHAOS_KEEP_DIRS=1 keeps logs and data for a post-mortem.
        if std::env::var_os("STOCKHOLD_CHAOS_KEEP_DIRS").is_some() {
            eprintln!("kept {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The last `lines` lines of a log file, without terminal colours.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = without_colours(&String::from_utf8_lossy(&text));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Drops ANSI escape sequences (`ESC [ … letter`): the development profile
/// logs in colour.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn show_tail_if_failing(what: &str, log: &Path) {
    if std::thread::panicking() {
        eprintln!(
            "----- last lines of {what} ({}) -----\n{}\n----- end of {what} -----",
            log.display(),
            tail(log, TAIL_LINES)
        );
    }
}

fn append_to(log: &Path) -> fs::File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open a log file")
}

/// SIGKILL and reap; true if a child was running.
fn kill(child: &mut Option<Child>) -> bool {
    match child.take() {
        Some(mut c) => {
            let _ = c.kill();
            let _ = c.wait();
            true
        }
        None => false,
    }
}

// ------------------------------------------------------------------ stockhold

/// Where a service instance keeps its data: all it is configured with,
/// besides its port.
#[derive(Clone, Debug)]
pub struct ServiceEnv {
    /// `STOCKHOLD_REDIS__URL`.
    pub redis_url: String,
    /// `STOCKHOLD_REDIS__KEY_PREFIX`.
    pub key_prefix: String,
    /// `STOCKHOLD_DATABASE__URL`.
    pub database_url: String,
    /// Further settings, as `STOCKHOLD_…` variables.
    pub extra: Vec<(String, String)>,
}

impl ServiceEnv {
    /// Redis and Postgres URLs with a fresh key prefix.
    pub fn new(redis_url: String, database_url: String) -> ServiceEnv {
        ServiceEnv {
            redis_url,
            key_prefix: format!("chaos{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            database_url,
            extra: Vec::new(),
        }
    }

    /// A Redis Cluster (`redis.cluster = true`) whose seed nodes `urls`
    /// lists (comma separated), the live state in `partitions` partitions.
    pub fn cluster(urls: String, database_url: String, partitions: u16) -> ServiceEnv {
        let mut env = ServiceEnv::new(urls, database_url);
        env.extra = vec![
            ("STOCKHOLD_REDIS__CLUSTER".into(), "true".into()),
            ("STOCKHOLD_REDIS__PARTITIONS".into(), partitions.to_string()),
        ];
        env
    }
}

/// The real `stockhold serve`, as a child process on a fixed port (a
/// restart comes back on the same one), configured only by environment.
pub struct Service {
    /// Shown in logs and reports.
    pub name: String,
    /// Its HTTP port.
    pub port: u16,
    env: ServiceEnv,
    child: Option<Child>,
    log: PathBuf,
    _dir: TempDir,
}

impl Service {
    /// Spawns the service; it is not ready yet (see `wait_ready`).
    pub fn start(name: &str, env: &ServiceEnv) -> Service {
        let dir = TempDir::new(name);
        let mut service = Service {
            name: name.to_owned(),
            port: free_port(),
            env: env.clone(),
            child: None,
            log: dir.path().join("stockhold.log"),
            _dir: dir,
        };
        service.spawn();
        service
    }

    fn spawn(&mut self) {
        let log = append_to(&self.log);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stockhold"));
        cmd.arg("serve").current_dir(env!("CARGO_MANIFEST_DIR"));
        // Only what is set here configures it: not the test runner's own
        // STOCKHOLD_* variables, nor a RUST_LOG that would override the filter.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("STOCKHOLD_") || key == "RUST_LOG" {
                cmd.env_remove(key);
            }
        }
        cmd.env("STOCKHOLD_PROFILE", "development")
            .env("STOCKHOLD_APPLICATION__HOST", "127.0.0.1")
            .env("STOCKHOLD_APPLICATION__PORT", self.port.to_string())
            .env("STOCKHOLD_REDIS__URL", &self.env.redis_url)
            .env("STOCKHOLD_REDIS__KEY_PREFIX", &self.env.key_prefix)
            .env("STOCKHOLD_DATABASE__URL", &self.env.database_url)
            .env("STOCKHOLD_TELEMETRY__FILTER", "warn")
            // No backtrace in every logged error (anyhow captures one when
            // RUST_BACKTRACE is set, as test runners often do); panics
            // still get theirs.
            .env("RUST_LIB_BACKTRACE", "0")
            .envs(self.env.extra.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a log handle"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn the stockhold binary"));
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Lines of its log that contain any of `needles` (colours removed):
    /// how many, and the first `shown` of them.
    pub fn log_lines_with(&self, needles: &[&str], shown: usize) -> (usize, Vec<String>) {
        let text = fs::read(&self.log).unwrap_or_default();
        let text = without_colours(&String::from_utf8_lossy(&text));
        let hits: Vec<&str> = text
            .lines()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .collect();
        let first = hits.iter().take(shown).map(|l| l.to_string()).collect();
        (hits.len(), first)
    }

    /// SIGKILL: no shutdown, in-flight requests die with it.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        kill(&mut self.child);
        self.spawn();
    }

    /// Polls `/healthz` until the HTTP server answers (it does before the
    /// start-up rebuild is done); true if `/readyz` then still says 503.
    pub async fn wait_listening(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            let get = |path: &str| {
                client
                    .get(format!("{}{path}", self.url()))
                    .timeout(Duration::from_secs(2))
                    .send()
            };
            if let Ok(res) = get("/healthz").await {
                if res.status() == 200 {
                    return get("/readyz").await.is_ok_and(|r| r.status() == 503);
                }
            }
            assert!(
                started.elapsed() < within,
                "{} not listening within {within:?}; log:\n{}",
                self.name,
                tail(&self.log, TAIL_LINES)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Polls `/readyz` until it answers 200; panics, with the log tail, if
    /// the process exits or `within` passes first. Returns how long it took.
    pub async fn wait_ready(&mut self, within: Duration) -> Duration {
        match self.ready_within(within).await {
            Ok(took) => took,
            Err(e) => panic!("{e}"),
        }
    }

    /// `wait_ready` that returns, rather than panics with, why the
    /// service was not ready (so a test can print its figures first).
    pub async fn ready_within(&mut self, within: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "{} exited ({status}) before it was ready; log:\n{}",
                    self.name,
                    tail(&self.log, TAIL_LINES)
                ));
            }
            let asked = client
                .get(format!("{}/readyz", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let last = match asked {
                Ok(res) if res.status() == 200 => return Ok(started.elapsed()),
                Ok(res) => format!("{}: {}", res.status(), res.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if started.elapsed() >= within {
                return Err(format!(
                    "{} not ready within {within:?}; last /readyz: {last}; log:\n{}",
                    self.name,
                    tail(&self.log, TAIL_LINES)
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        kill(&mut self.child);
        show_tail_if_failing(&self.name, &self.log);
    }
}

// ---------------------------------------------------------------------- Redis

/// A redis-server of the test's own: AOF on (fsync every second), data in
/// a temp dir that survives kills, so a restart replays the AOF.
pub struct Redis {
    /// Its port.
    pub port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: TempDir,
}

impl Redis {
    /// Starts it and waits until it answers PING.
    pub async fn start() -> Redis {
        let dir = TempDir::new("redis");
        let mut redis = Redis {
            port: free_port(),
            child: None,
            log: dir.path().join("redis.log"),
            dir,
        };
        redis.spawn();
        redis.wait_up().await;
        redis
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--auto-aof-rewrite-percentage", "0"])
            .args(["--save", ""])
            .arg("--logfile")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(append_to(&self.log))
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
    }

    async fn wait_up(&mut self) {
        let started = Instant::now();
        let client = redis::Client::open(self.url()).expect("a Redis URL");
        loop {
            let ping = tokio::time::timeout(Duration::from_secs(1), async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            })
            .await;
            // While it replays the AOF, Redis answers LOADING: not up yet.
            if let Ok(Ok(_)) = ping {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "redis-server exited ({status}); log:\n{}",
                    tail(&self.log, TAIL_LINES)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "redis-server on {} not up within 30 s; log:\n{}",
                self.port,
                tail(&self.log, TAIL_LINES)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Where the AOF ends now: Redis 7 appends to the newest incremental
    /// file in `appendonlydir/` (automatic rewrites are off, so it stays).
    pub fn aof_end(&self) -> (PathBuf, u64) {
        let dir = self.dir.path().join("appendonlydir");
        let mut incr: Vec<PathBuf> = fs::read_dir(&dir)
            .expect("the AOF directory")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
            .collect();
        incr.sort();
        let file = incr.pop().expect("an incremental AOF file");
        let len = fs::metadata(&file).expect("the AOF file").len();
        (file, len)
    }

    /// With Redis killed: cuts the AOF back to an earlier end, as if what
    /// was written since never reached the disk. Returns the bytes dropped.
    pub fn cut_aof_to(&self, end: &(PathBuf, u64)) -> u64 {
        assert!(self.child.is_none(), "cut the AOF of a running Redis");
        let now = self.aof_end();
        assert_eq!(now.0, end.0, "the AOF moved to another file");
        let file = OpenOptions::new()
            .write(true)
            .open(&end.0)
            .expect("open the AOF");
        file.set_len(end.1).expect("truncate the AOF");
        now.1 - end.1
    }

    /// SIGKILL: whatever is not in the AOF yet is lost.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port and directory (the AOF replays)
    /// and waits until it answers.
    pub async fn restart(&mut self) {
        kill(&mut self.child);
        self.spawn();
        self.wait_up().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        kill(&mut self.child);
        show_tail_if_failing("redis-server", &self.log);
    }
}

// ------------------------------------------------------------------- Postgres

fn is_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// A throwaway Postgres cluster of the test's own, on a free port, with
/// fsync off; the test may stop and start it. As root, every Postgres
/// command runs as the `postgres` user (Postgres refuses root), from `/`.
pub struct PgCluster {
    /// Its port.
    pub port: u16,
    running: bool,
    dir: TempDir,
}

impl PgCluster {
    /// initdb, then start; waits until it accepts connections.
    pub async fn start() -> PgCluster {
        let mut cluster = PgCluster {
            port: free_port(),
            running: false,
            dir: TempDir::new("pg"),
        };
        let dir = cluster.dir.path().to_owned();
        tokio::task::spawn_blocking(move || init_cluster(&dir))
            .await
            .expect("initdb");
        cluster.start_again().await;
        cluster
    }

    /// `postgres://stockhold@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://stockhold@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl stop -m immediate`: every backend dies at once, as in a crash.
    pub async fn stop(&mut self) {
        let dir = self.dir.path().to_owned();
        tokio::task::spawn_blocking(move || stop_cluster(&dir))
            .await
            .expect("pg_ctl stop");
        self.running = false;
    }

    /// `pg_ctl start`, waiting until it accepts connections (crash recovery
    /// included).
    pub async fn start_again(&mut self) {
        let (dir, port) = (self.dir.path().to_owned(), self.port);
        tokio::task::spawn_blocking(move || start_cluster(&dir, port))
            .await
            .expect("pg_ctl start");
        self.running = true;
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            stop_cluster(self.dir.path());
        }
        show_tail_if_failing("postgres", &self.dir.path().join("postgres.log"));
    }
}

/// Runs a Postgres binary as the user Postgres runs as; its output goes to
/// `<dir>/pg_ctl.log`. Panics, with that log, if it fails.
fn as_postgres(dir: &Path, program: &str, args: &[&str]) {
    let program = format!("{PG_BIN}/{program}");
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &program]);
        c
    } else {
        Command::new(&program)
    };
    let log = dir.join("pg_ctl.log");
    let status = cmd
        .args(args)
        // initdb and pg_ctl fail if they cannot read the current directory.
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(append_to(&log))
        .stderr(append_to(&log))
        .status()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        status.success(),
        "{program} {args:?} failed ({status}); output:\n{}\nserver log:\n{}",
        tail(&log, TAIL_LINES),
        tail(&dir.join("postgres.log"), TAIL_LINES)
    );
}

fn init_cluster(dir: &Path) {
    let data = dir.join("data");
    fs::create_dir_all(&data).expect("create the data dir");
    fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).expect("chmod the data dir");
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown -R postgres: {}", dir.display());
    }
    let data = data.to_string_lossy().into_owned();
    as_postgres(
        dir,
        "initdb",
        &[
            "-D",
            &data,
            "-U",
            "stockhold",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
    );
}

fn start_cluster(dir: &Path, port: u16) {
    let data = dir.join("data").to_string_lossy().into_owned();
    let log = dir.join("postgres.log").to_string_lossy().into_owned();
    let opts = format!(
        // fsync off only risks data on an OS crash; synchronous_commit stays
        // on, else an immediate stop could lose transactions Postgres had
        // already confirmed, and with them orders the service answered 201.
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100 \
         -c fsync=off -c full_page_writes=off",
        dir.display()
    );
    as_postgres(
        dir,
        "pg_ctl",
        &[
            "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "60", "start",
        ],
    );
}

fn stop_cluster(dir: &Path) {
    let data = dir.join("data").to_string_lossy().into_owned();
    as_postgres(
        dir,
        "pg_ctl",
        &["-D", &data, "-m", "immediate", "-w", "-t", "60", "stop"],
    );
}

/// A database of the test's own on the shared test Postgres (5434), dropped
/// when the test ends. Named `test_…` so scripts/test.sh cleans up after a
/// run that was interrupted.
pub struct Database {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

impl Database {
    /// Creates it.
    pub async fn create() -> Database {
        let admin = std::env::var("STOCKHOLD_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://stockhold@127.0.0.1:5434/postgres".into());
        let name = format!("test_chaos_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin)
            .await
            .expect("the test Postgres is reachable (scripts/test.sh starts it)");
        conn.execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .expect("create a test database");
        let base = admin.rsplit_once('/').expect("a URL with a path").0;
        Database {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside async (and maybe while unwinding): a thread of
        // its own with a small runtime, bounded in time.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), async {
                    let mut conn = PgConnection::connect(&admin).await.ok()?;
                    let sql = format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#);
                    conn.execute(sql.as_str()).await.ok()
                })
                .await
                .ok()
                .flatten()
            })
        });
        let _ = dropped.join();
    }
}

// -------------------------------------------------------------- Redis Cluster

/// Settings of every node, as scripts/services.sh starts them
/// (`cluster_node_up`).
const CLUSTER_NODE_TIMEOUT_MS: u64 = 2000;
/// Masters of the cluster; each has one replica.
const CLUSTER_MASTERS: usize = 3;

/// A port for a cluster node: free, and so is its bus port (+10 000). Both
/// below the kernel's ephemeral range (32768–60999), for the reason
/// `free_port` gives.
fn free_cluster_port(taken: &[u16]) -> u16 {
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..22_700);
        if !taken.contains(&port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port pair in 20000..22700 (+10000)");
}

/// Runs `redis-cli -p <port> <args>` (raw output, no retries); its stdout,
/// or why it failed.
fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // redis-cli exits 0 on an error reply, printing it ("ERR …"); a
    // connection failure goes to stderr.
    if !out.status.success() || stdout.starts_with("ERR") || stdout.starts_with("MOVED") {
        let shown = args.iter().take(8).copied().collect::<Vec<_>>().join(" ");
        return Err(format!(
            "{} {} (redis-cli -p {port} {shown}{}, {})",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim(),
            if args.len() > 8 { " …" } else { "" },
            out.status,
        ));
    }
    Ok(stdout)
}

/// The same, off the async workers (redis-cli takes milliseconds, a
/// `--cluster` command seconds).
async fn cli_async(port: u16, args: Vec<String>) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(port, &args)
    })
    .await
    .expect("redis-cli thread")
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct ClusterNodeInfo {
    /// Node id.
    pub id: String,
    /// Client port.
    pub port: u16,
    /// A master (else a replica).
    pub master: bool,
    /// Flagged `fail` or `fail?` by the node asked.
    pub failing: bool,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served (inclusive), for a master.
    pub slots: Vec<(u16, u16)>,
}

impl ClusterNodeInfo {
    /// Whether it serves `slot`.
    pub fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

fn parse_cluster_nodes(text: &str) -> Vec<ClusterNodeInfo> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        // ip:port@bus
        let port = f[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let flags: Vec<&str> = f[2].split(',').collect();
        let slots = f[8..]
            .iter()
            // "[slot->-id]" / "[slot-<-id]": a migration in progress.
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        nodes.push(ClusterNodeInfo {
            id: f[0].to_owned(),
            port,
            master: flags.contains(&"master"),
            failing: flags.iter().any(|f| f.starts_with("fail")),
            master_id: (f[3] != "-").then(|| f[3].to_owned()),
            slots,
        });
    }
    nodes
}

/// One node of a `RedisCluster`.
struct ClusterNode {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
    dir: TempDir,
}

impl ClusterNode {
    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args([
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT_MS.to_string(),
            ])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--appendonly", "yes", "--appendfsync", "everysec"])
            .args(["--save", ""])
            .arg("--logfile")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(append_to(&self.log))
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
    }
}

/// A Redis Cluster of the test's own on loopback, as scripts/services.sh
/// makes one: 3 masters and 3 replicas, each in its own temp dir with AOF
/// (everysec), node timeout 2 s, `cluster-require-full-coverage no`,
/// created with `redis-cli --cluster create … --cluster-replicas 1`. Nodes
/// can be SIGKILLed and restarted (a restarted node keeps its nodes.conf
/// and AOF, and rejoins: as a replica, if its slots were failed over).
pub struct RedisCluster {
    nodes: Vec<ClusterNode>,
}

impl RedisCluster {
    /// Starts six nodes, creates the cluster, and waits until every node
    /// reports `cluster_state:ok` and knows of three masters with a
    /// replica each.
    pub async fn start() -> RedisCluster {
        let mut ports = Vec::new();
        for _ in 0..2 * CLUSTER_MASTERS {
            ports.push(free_cluster_port(&ports));
        }
        let mut cluster = RedisCluster {
            nodes: ports
                .iter()
                .map(|&port| {
                    let dir = TempDir::new("redis-cluster");
                    ClusterNode {
                        port,
                        child: None,
                        log: dir.path().join("redis.log"),
                        dir,
                    }
                })
                .collect(),
        };
        for node in &mut cluster.nodes {
            node.spawn();
        }
        for port in ports.clone() {
            cluster.wait_node_up(port).await;
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(ports.iter().map(|p| format!("127.0.0.1:{p}")));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        cli_async(ports[0], args)
            .await
            .unwrap_or_else(|e| panic!("redis-cli --cluster create: {e}"));
        cluster.wait_healthy(Duration::from_secs(30)).await;
        cluster
    }

    /// Seed URLs of every node, comma separated (`STOCKHOLD_REDIS__URL`
    /// with `redis.cluster = true`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&mut self, port: u16) -> &mut ClusterNode {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on {port}"))
    }

    fn running(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    async fn wait_node_up(&mut self, port: u16) {
        let started = Instant::now();
        loop {
            if let Ok(out) = cli_async(port, vec!["PING".into()]).await {
                if out.trim() == "PONG" {
                    return;
                }
            }
            let node = self.node(port);
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                panic!(
                    "cluster node {port} exited ({status}); log:\n{}",
                    tail(&node.log, TAIL_LINES)
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "cluster node {port} not up within 30 s; log:\n{}",
                tail(&node.log, TAIL_LINES)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running node says `cluster_state:ok`, and agrees
    /// that there are three masters, none failing, serving all 16384 slots,
    /// each with a replica that is running. Returns how long it took.
    pub async fn wait_healthy(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let why = match self.health().await {
                Ok(()) => return started.elapsed(),
                Err(why) => why,
            };
            assert!(
                started.elapsed() < within,
                "the cluster is not healthy within {within:?}: {why}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn health(&self) -> Result<(), String> {
        let running = self.running();
        for &port in &running {
            let info = cli_async(port, vec!["CLUSTER".into(), "INFO".into()]).await?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {port}: not cluster_state:ok"));
            }
            let nodes = parse_cluster_nodes(
                &cli_async(port, vec!["CLUSTER".into(), "NODES".into()]).await?,
            );
            let masters: Vec<&ClusterNodeInfo> = nodes
                .iter()
                .filter(|n| n.master && !n.slots.is_empty())
                .collect();
            if masters.len() != CLUSTER_MASTERS || masters.iter().any(|m| m.failing) {
                return Err(format!("node {port} sees masters {masters:?}"));
            }
            let covered: u32 = masters
                .iter()
                .flat_map(|m| &m.slots)
                .map(|(a, b)| u32::from(b - a) + 1)
                .sum();
            if covered != 16384 {
                return Err(format!("node {port} sees {covered} slots served"));
            }
            for m in &masters {
                let replicas = nodes
                    .iter()
                    .filter(|n| n.master_id.as_deref() == Some(m.id.as_str()))
                    .filter(|n| !n.failing && running.contains(&n.port))
                    .count();
                if replicas == 0 {
                    return Err(format!("node {port}: master {} has no replica", m.port));
                }
            }
        }
        Ok(())
    }

    /// `CLUSTER NODES` as a running node sees it (the first that answers).
    pub async fn cluster_nodes(&self) -> Vec<ClusterNodeInfo> {
        let mut last = String::new();
        for port in self.running() {
            match cli_async(port, vec!["CLUSTER".into(), "NODES".into()]).await {
                Ok(text) => return parse_cluster_nodes(&text),
                Err(e) => last = e,
            }
        }
        panic!("no cluster node answers CLUSTER NODES: {last}");
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub async fn keyslot(&self, key: &str) -> u16 {
        let port = self.running()[0];
        let out = cli_async(port, vec!["CLUSTER".into(), "KEYSLOT".into(), key.into()])
            .await
            .unwrap_or_else(|e| panic!("CLUSTER KEYSLOT {key}: {e}"));
        out.trim().parse().expect("a slot number")
    }

    /// The port of the master serving `slot`, per `CLUSTER SLOTS` on a
    /// running node.
    pub async fn master_of_slot(&self, slot: u16) -> u16 {
        let nodes = self.cluster_nodes().await;
        let port = self.running()[0];
        let slots = cli_async(port, vec!["CLUSTER".into(), "SLOTS".into()])
            .await
            .unwrap_or_else(|e| panic!("CLUSTER SLOTS: {e}"));
        // Raw output: per range, start, end, then per node ip, port, id
        // (and, in 7.x, a hostname map), masters first.
        let lines: Vec<&str> = slots.lines().map(str::trim).collect();
        for w in lines.windows(4) {
            if let (Ok(a), Ok(b), Ok(_ip), Ok(p)) = (
                w[0].parse::<u16>(),
                w[1].parse::<u16>(),
                w[2].parse::<std::net::Ipv4Addr>(),
                w[3].parse::<u16>(),
            ) {
                if (a..=b).contains(&slot) {
                    return p;
                }
            }
        }
        // Fall back on CLUSTER NODES.
        nodes
            .iter()
            .find(|n| n.master && !n.failing && n.serves(slot))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no master serves slot {slot}: {nodes:?}"))
    }

    /// The port of the master serving `key`.
    pub async fn master_of_key(&self, key: &str) -> u16 {
        let slot = self.keyslot(key).await;
        self.master_of_slot(slot).await
    }

    /// The ports of the masters (serving slots, not failing).
    pub async fn masters(&self) -> Vec<u16> {
        let mut m: Vec<u16> = self
            .cluster_nodes()
            .await
            .iter()
            .filter(|n| n.master && !n.failing && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        m.sort_unstable();
        m
    }

    /// The port of a replica of the master on `master`.
    pub async fn replica_of(&self, master: u16) -> u16 {
        let nodes = self.cluster_nodes().await;
        let id = &nodes
            .iter()
            .find(|n| n.port == master)
            .unwrap_or_else(|| panic!("no node on {master}"))
            .id;
        nodes
            .iter()
            .find(|n| n.master_id.as_ref() == Some(id) && !n.failing)
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("master {master} has no replica: {nodes:?}"))
    }

    /// The node id of the node on `port`.
    pub async fn node_id(&self, port: u16) -> String {
        cli_async(port, vec!["CLUSTER".into(), "MYID".into()])
            .await
            .unwrap_or_else(|e| panic!("CLUSTER MYID: {e}"))
            .trim()
            .to_owned()
    }

    /// Whether the node on `port` is a master, by its own `ROLE`.
    pub async fn is_master(&self, port: u16) -> bool {
        cli_async(port, vec!["ROLE".into()])
            .await
            .is_ok_and(|r| r.lines().next() == Some("master"))
    }

    /// Per running node: its role, commands processed so far, and its
    /// normal clients (address, age, idle seconds, last command), for a
    /// post-mortem of a client that stopped getting answers.
    pub async fn clients_summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        for port in self.running() {
            let role = cli_async(port, vec!["ROLE".into()])
                .await
                .map(|r| r.lines().next().unwrap_or("?").to_owned())
                .unwrap_or_else(|e| e);
            let processed = cli_async(port, vec!["INFO".into(), "stats".into()])
                .await
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("total_commands_processed:"))
                .unwrap_or("?")
                .trim()
                .to_owned();
            let clients: Vec<String> = cli_async(port, vec!["CLIENT".into(), "LIST".into()])
                .await
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("flags=N") && !l.contains("cmd=client|list"))
                .map(|l| {
                    l.split_whitespace()
                        .filter(|f| {
                            ["addr=", "age=", "idle=", "cmd=", "qbuf=", "omem="]
                                .iter()
                                .any(|k| f.starts_with(k))
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            out.push(format!(
                "node {port} ({role}, {processed} commands processed): {} clients: {}",
                clients.len(),
                clients.join("; ")
            ));
        }
        out
    }

    /// SIGKILLs the node on `port`: what its replica had not received is lost.
    pub fn kill(&mut self, port: u16) {
        kill(&mut self.node(port).child);
    }

    /// Starts the node on `port` again (same dir: nodes.conf and AOF) and
    /// waits until it answers.
    pub async fn restart(&mut self, port: u16) {
        let node = self.node(port);
        kill(&mut node.child);
        node.spawn();
        self.wait_node_up(port).await;
    }

    /// Waits until some other node than the one on `old` serves `slot`, as
    /// every running node sees it; returns its port.
    pub async fn wait_slot_moved_from(&self, slot: u16, old: u16, within: Duration) -> u16 {
        let started = Instant::now();
        loop {
            let mut owners = Vec::new();
            for port in self.running() {
                if let Ok(text) = cli_async(port, vec!["CLUSTER".into(), "NODES".into()]).await {
                    owners.push(
                        parse_cluster_nodes(&text)
                            .into_iter()
                            .find(|n| n.master && n.serves(slot))
                            .map(|n| n.port),
                    );
                }
            }
            if let Some(Some(new)) = owners.first() {
                if *new != old && owners.iter().all(|o| o == &Some(*new)) {
                    return *new;
                }
            }
            assert!(
                started.elapsed() < within,
                "slot {slot} still served by {old} after {within:?}: {owners:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `CLUSTER FAILOVER` on the replica on `replica` (a coordinated
    /// failover: the master stops writes until the replica caught up).
    pub async fn failover(&self, replica: u16) {
        cli_async(replica, vec!["CLUSTER".into(), "FAILOVER".into()])
            .await
            .unwrap_or_else(|e| panic!("CLUSTER FAILOVER on {replica}: {e}"));
    }

    /// Moves `slot` from the master on `from` to the master on `to`, as
    /// `redis-cli --cluster reshard` does for each slot it moves, but for
    /// this slot: `SETSLOT IMPORTING` on the target, `MIGRATING` on the
    /// source, its keys `MIGRATE`d `batch` at a time (with `pause`
    /// between batches, so the migration lasts as it would with more data),
    /// then `SETSLOT NODE` on the target, the source and every other master.
    /// Returns the keys moved. A key that exists on both sides (BUSYKEY) is
    /// moved with REPLACE and the slot handed over, but the refusal is
    /// returned as an error; any other failing step is returned as an
    /// error at once, the slot left as it is.
    pub async fn migrate_slot(
        &self,
        slot: u16,
        from: u16,
        to: u16,
        batch: usize,
        pause: Duration,
    ) -> Result<usize, String> {
        let (from_id, to_id) = (self.node_id(from).await, self.node_id(to).await);
        let s = slot.to_string();
        let setslot = |port: u16, args: &[&str]| {
            let mut v: Vec<String> = vec!["CLUSTER".into(), "SETSLOT".into(), s.clone()];
            v.extend(args.iter().map(|a| a.to_string()));
            cli_async(port, v)
        };
        setslot(to, &["IMPORTING", &from_id]).await?;
        setslot(from, &["MIGRATING", &to_id]).await?;
        let mut moved = 0;
        let mut errors = Vec::new();
        let started = Instant::now();
        loop {
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("slot {slot}: keys still on {from} after 60 s"));
            }
            let keys = cli_async(
                from,
                vec![
                    "CLUSTER".into(),
                    "GETKEYSINSLOT".into(),
                    s.clone(),
                    batch.to_string(),
                ],
            )
            .await?;
            let keys: Vec<String> = keys
                .lines()
                .filter(|k| !k.is_empty())
                .map(String::from)
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut args: Vec<String> = vec![
                "MIGRATE".into(),
                "127.0.0.1".into(),
                to.to_string(),
                String::new(),
                "0".into(),
                "10000".into(),
                "KEYS".into(),
            ];
            moved += keys.len();
            let mut replace = args.clone();
            replace.insert(6, "REPLACE".into());
            args.extend(keys.iter().cloned());
            let out = match cli_async(from, args).await {
                Ok(out) => out,
                // A key of the slot exists on the target already (written
                // there while the slot was not its own): as `redis-cli
                // --cluster fix` would, the source's copy replaces it, so
                // the slot can still be handed over; the error is returned.
                Err(e) if e.contains("BUSYKEY") => {
                    let busy = format!("MIGRATE of slot {slot} from {from} to {to}: {e}");
                    replace.extend(keys);
                    cli_async(from, replace).await?;
                    errors.push(busy);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if out.trim() != "OK" && out.trim() != "NOKEY" {
                return Err(format!("MIGRATE of slot {slot}: {}", out.trim()));
            }
            tokio::time::sleep(pause).await;
        }
        // The target first, then the source (it stops redirecting with ASK
        // and answers MOVED), then the rest, as redis-cli does.
        setslot(to, &["NODE", &to_id]).await?;
        setslot(from, &["NODE", &to_id]).await?;
        for port in self.masters().await {
            if port != from && port != to {
                let _ = setslot(port, &["NODE", &to_id]).await;
            }
        }
        if errors.is_empty() {
            Ok(moved)
        } else {
            Err(format!(
                "{} MIGRATE batches refused (done again with REPLACE), the first: {}",
                errors.len(),
                errors[0]
            ))
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            kill(&mut node.child);
        }
        for node in &self.nodes {
            show_tail_if_failing(&format!("redis cluster node {}", node.port), &node.log);
        }
    }
}
