//! Fault helpers: a TCP proxy that can cut an app off from Postgres, and a
//! Redis process of a test's own that it may flush or kill.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Forwards 127.0.0.1:<port> to a target until cut: then open connections
/// are closed and new ones are dropped at once, as if the server were down.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (up2, links2, delay2) = (up.clone(), links.clone(), delay_ms.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: connection closed at once
                }
                let delay = delay2.clone();
                let link = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(target).await {
                        let (mut in_read, mut in_write) = inbound.into_split();
                        let (mut out_read, mut out_write) = outbound.into_split();
                        let d = delay.clone();
                        tokio::join!(
                            pump(&mut in_read, &mut out_write, &delay),
                            pump(&mut out_read, &mut in_write, &d)
                        );
                    }
                });
                links2.lock().unwrap().push(link.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            port,
            up,
            delay_ms,
            links,
            accept,
        }
    }

    /// Delays every chunk sent either way by `ms` (0: none).
    pub fn slow_down(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies one direction, sleeping before each chunk while a delay is set.
async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    delay: &AtomicU64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let ms = delay.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// A redis-server of the test's own on a free port: without persistence, or
/// (`start_persistent`) with an AOF written on every command, so a test
/// knows exactly what is on disk and can cut it back, as a crash with
/// `appendfsync everysec` would.
pub struct TestRedis {
    pub port: u16,
    child: Option<Child>,
    /// The data directory of a persistent Redis, removed when dropped.
    dir: Option<std::path::PathBuf>,
}

impl TestRedis {
    pub async fn start() -> TestRedis {
        Self::start_in(None).await
    }

    /// A Redis whose AOF survives `kill` and replays on `restart`.
    pub async fn start_persistent() -> TestRedis {
        let dir = std::env::temp_dir().join(format!(
            "stockhold-test-redis-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self::start_in(Some(dir)).await
    }

    async fn start_in(dir: Option<std::path::PathBuf>) -> TestRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = TestRedis {
            port,
            child: None,
            dir,
        };
        redis.spawn().await;
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]);
        match &self.dir {
            Some(dir) => command
                .arg("--dir")
                .arg(dir)
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .args(["--auto-aof-rewrite-percentage", "0"]),
            None => command.args(["--appendonly", "no"]),
        };
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..250 {
            // PING answers once the AOF is loaded (LOADING before).
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server on {} did not start", self.port);
    }

    /// SIGKILL, then a fresh start on the same port without any data.
    pub async fn restart_empty(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::create_dir_all(dir).unwrap();
        }
        self.spawn().await;
    }

    /// SIGKILL (if running), then a start on the same port and data: the AOF
    /// replays.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Where the AOF of a persistent Redis ends now: Redis 7 appends to the
    /// newest incremental file in `appendonlydir/`.
    pub fn aof_end(&self) -> (std::path::PathBuf, u64) {
        let dir = self
            .dir
            .as_ref()
            .expect("a persistent Redis")
            .join("appendonlydir");
        let mut incr: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".incr.aof"))
            .collect();
        incr.sort();
        let file = incr.pop().expect("an incremental AOF file");
        let len = std::fs::metadata(&file).unwrap().len();
        (file, len)
    }

    /// With Redis killed: cuts the AOF back to an earlier end, as if what was
    /// written since never reached the disk.
    pub fn cut_aof_to(&self, end: &(std::path::PathBuf, u64)) {
        assert!(self.child.is_none(), "cut the AOF of a running Redis");
        assert_eq!(self.aof_end().0, end.0, "the AOF moved to another file");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&end.0)
            .unwrap();
        file.set_len(end.1).unwrap();
    }

    pub async fn flushall(&self) {
        self.command(&mut redis::cmd("FLUSHALL")).await;
    }

    /// Runs one command on this Redis (a new connection each time).
    pub async fn command(&self, cmd: &mut redis::Cmd) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        cmd.query_async(&mut conn).await.unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
