//! Redis connections shared by every request. Each is a multiplexed
//! connection: many requests send on it at once, so their commands share
//! socket reads and writes on both ends, and no request waits to borrow a
//! connection or pays a health-check round trip to get one (a pool that
//! PINGs on every checkout doubled the round trips of each script call).
//! A connection that fails is reconnected by the next call that uses it.
//!
//! The tasks that drive the sockets run on a thread of their own: on a
//! request worker they would wait behind every request queued there, and
//! in a flash sale that is thousands, so every answer would be late.

use super::EngineError;
use anyhow::{anyhow, Context};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, OnceCell};

/// A few shared connections, used in turn.
pub(crate) struct Connections {
    client: redis::Client,
    config: ConnectionManagerConfig,
    slots: Box<[OnceCell<ConnectionManager>]>,
    next: AtomicUsize,
    io: Handle,
    /// Stops the I/O thread when the connections are dropped.
    _stop: oneshot::Sender<()>,
}

impl Connections {
    /// `count` connections to `url`, each opened on first use; an attempt
    /// to connect or to get an answer gives up after `timeout`.
    pub fn new(url: &str, count: usize, timeout: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        // One quick attempt per call: while Redis is away, calls answer 503
        // at once instead of queueing behind retries; the next call tries
        // again.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let (io, stop) = io_thread()?;
        Ok(Connections {
            client,
            config,
            slots: (0..count.max(1)).map(|_| OnceCell::new()).collect(),
            next: AtomicUsize::new(0),
            io,
            _stop: stop,
        })
    }

    /// The next connection in turn (a cheap handle onto the shared one).
    pub async fn get(&self) -> Result<ConnectionManager, EngineError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        slot.get_or_try_init(|| async {
            // Made on the I/O thread, so its driver task (and every
            // reconnection) runs there.
            let connect =
                ConnectionManager::new_with_config(self.client.clone(), self.config.clone());
            match self.io.spawn(connect).await {
                Ok(made) => made.map_err(anyhow::Error::from),
                Err(e) => Err(anyhow!(e)),
            }
        })
        .await
        .cloned()
        .map_err(|e| EngineError::Unavailable(e.context("connecting to Redis")))
    }

    /// Connections opened so far, and how many there may be.
    pub fn opened(&self) -> (usize, usize) {
        let open = self.slots.iter().filter(|s| s.initialized()).count();
        (open, self.slots.len())
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
