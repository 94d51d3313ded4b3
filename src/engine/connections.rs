//! Redis connections shared by every request. Each is a multiplexed
//! connection: many requests send on it at once, so their commands share
//! socket reads and writes on both ends, and no request waits to borrow a
//! connection or pays a health-check round trip to get one (a pool that
//! PINGs on every checkout doubled the round trips of each script call).
//! A connection that fails is reconnected by the next call that uses it.
//!
//! On a single Redis: a few connections, used in turn. On a Redis Cluster:
//! one connection per node, each call routed by its key's slot
//! (`cluster.rs`), following the cluster through failovers and slot moves.
//!
//! The tasks that drive the sockets run on a thread of their own: on a
//! request worker they would wait behind every request queued there, and
//! in a flash sale that is thousands, so every answer would be late.

use super::cluster::{Routed, Router};
use super::EngineError;
use anyhow::{anyhow, Context};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, OnceCell};

/// A connection to a single Redis or to a cluster; cheap to clone.
// Cloned for every call: boxing the bigger variant would allocate per call.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(crate) enum Connection {
    Single(ConnectionManager),
    Cluster(Routed),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(cmd, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// Runs `cmd` (which names no key) on the master that serves `key`'s
    /// slot: on a cluster, the node owning a partition.
    pub async fn on_master_of(&mut self, key: &str, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Connection::Single(c) => cmd.query_async(c).await,
            Connection::Cluster(c) => c.on_master_of(key, cmd).await,
        }
    }
}

enum Clients {
    Single {
        client: redis::Client,
        config: ConnectionManagerConfig,
        slots: Box<[OnceCell<ConnectionManager>]>,
        next: AtomicUsize,
    },
    Cluster(Arc<Router>),
}

/// The shared connections.
pub(crate) struct Connections {
    clients: Clients,
    io: Handle,
    /// Stops the I/O thread when the connections are dropped.
    _stop: oneshot::Sender<()>,
}

impl Connections {
    /// `count` connections to the Redis at `url` or, with `cluster`, one
    /// per node of the cluster whose seed nodes `url` lists (comma
    /// separated); each opened on first use. An attempt to connect or to
    /// get an answer gives up after `timeout`.
    pub fn new(url: &str, cluster: bool, count: usize, timeout: Duration) -> anyhow::Result<Self> {
        let (io, stop) = io_thread()?;
        let clients = if cluster {
            Clients::Cluster(Arc::new(Router::new(url, timeout, io.clone())?))
        } else {
            // One quick attempt per call: while Redis is away, calls answer
            // 503 at once instead of queueing behind retries; the next call
            // tries again.
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(0)
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout);
            Clients::Single {
                client: redis::Client::open(url)?,
                config,
                slots: (0..count.max(1)).map(|_| OnceCell::new()).collect(),
                next: AtomicUsize::new(0),
            }
        };
        Ok(Connections {
            clients,
            io,
            _stop: stop,
        })
    }

    /// The next connection in turn (a cheap handle onto the shared one).
    pub async fn get(&self) -> Result<Connection, EngineError> {
        // Made on the I/O thread, so the driver tasks (and every
        // reconnection) run there.
        let made = match &self.clients {
            Clients::Single {
                client,
                config,
                slots,
                next,
            } => {
                let slot = &slots[next.fetch_add(1, Ordering::Relaxed) % slots.len()];
                slot.get_or_try_init(|| async {
                    let connect =
                        ConnectionManager::new_with_config(client.clone(), config.clone());
                    match self.io.spawn(connect).await {
                        Ok(made) => made.map_err(anyhow::Error::from),
                        Err(e) => Err(anyhow!(e)),
                    }
                })
                .await
                .cloned()
                .map(Connection::Single)
            }
            Clients::Cluster(router) => Ok(Connection::Cluster(Routed::new(router.clone()))),
        };
        made.map_err(|e| EngineError::Unavailable(e.context("connecting to Redis")))
    }

    /// Connections opened so far, and how many there may be.
    pub fn opened(&self) -> (usize, usize) {
        match &self.clients {
            Clients::Single { slots, .. } => {
                let open = slots.iter().filter(|s| s.initialized()).count();
                (open, slots.len())
            }
            Clients::Cluster(router) => {
                let open = router.opened();
                (open, open)
            }
        }
    }
}

/// A thread running a Tokio runtime of its own until `stop` is sent or
/// dropped; its handle.
fn io_thread() -> anyhow::Result<(Handle, oneshot::Sender<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the Redis I/O runtime")?;
    let handle = runtime.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("redis-io".into())
        .spawn(move || {
            let _ = runtime.block_on(stopped);
        })
        .context("starting the Redis I/O thread")?;
    Ok((handle, stop))
}
