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
}

impl ServiceEnv {
    /// Redis and Postgres URLs with a fresh key prefix.
    pub fn new(redis_url: String, database_url: String) -> ServiceEnv {
        ServiceEnv {
            redis_url,
            key_prefix: format!("chaos{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            database_url,
        }
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
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a log handle"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn the stockhold binary"));
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "{} exited ({status}) before it was ready; log:\n{}",
                    self.name,
                    tail(&self.log, TAIL_LINES)
                );
            }
            let asked = client
                .get(format!("{}/readyz", self.url()))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let last = match asked {
                Ok(res) if res.status() == 200 => return started.elapsed(),
                Ok(res) => format!("{}: {}", res.status(), res.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            assert!(
                started.elapsed() < within,
                "{} not ready within {within:?}; last /readyz: {last}; log:\n{}",
                self.name,
                tail(&self.log, TAIL_LINES)
            );
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
