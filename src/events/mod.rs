//! Live stock events for readers inside the service (the SSE endpoint):
//! one task per partition follows its events stream with blocking reads
//! (XREAD BLOCK) on a Redis connection of its own, from a deadpool-redis
//! pool (a blocking read must not hold up the shared multiplexed
//! connections every request uses), and passes each event to every
//! subscriber. The tasks start with the first subscriber; an instance no
//! one reads events from costs Redis nothing.
//!
//! A subscriber never depends on the tasks for completeness: it reads what
//! it missed from the streams itself (`Engine::events_after`) and uses the
//! live events to wait, skipping those it has (see `EventPosition`).

pub mod webhooks;

use crate::configuration::RedisSettings;
use crate::domain::{Event, Partition, StreamId};
use crate::engine::{Engine, EngineError};
use anyhow::Context;
use redis::aio::ConnectionLike;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, OnceCell};
use tokio_util::sync::CancellationToken;

/// How long one blocking read waits for an event before it asks again.
const BLOCK: Duration = Duration::from_secs(2);
/// Most events one read takes.
const READ_COUNT: usize = 500;
/// Live events kept for subscribers that fall behind; one that falls
/// further behind reads what it missed from Redis.
const LIVE_BACKLOG: usize = 8192;

/// The dedicated connections of the blocking reads.
enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// The live events of every partition; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    pool: Pool,
    sender: broadcast::Sender<Arc<Event>>,
    started: OnceCell<()>,
    shutdown: CancellationToken,
}

impl Hub {
    /// A hub reading `engine`'s partitions from the Redis of `settings`,
    /// until `shutdown`.
    pub fn new(
        settings: &RedisSettings,
        engine: Engine,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let size = engine.partitions().count() as usize + 1;
        let runtime = Some(deadpool_redis::Runtime::Tokio1);
        let pool = if settings.cluster {
            let urls: Vec<String> = settings
                .url
                .split(',')
                .map(|u| u.trim().to_owned())
                .collect();
            let mut config = deadpool_redis::cluster::Config::from_urls(urls);
            config.pool = Some(deadpool_redis::PoolConfig::new(size));
            Pool::Cluster(config.create_pool(runtime).context("the events pool")?)
        } else {
            let mut config = deadpool_redis::Config::from_url(settings.url.clone());
            config.pool = Some(deadpool_redis::PoolConfig::new(size));
            Pool::Single(config.create_pool(runtime).context("the events pool")?)
        };
        let (sender, _) = broadcast::channel(LIVE_BACKLOG);
        Ok(Hub {
            inner: Arc::new(Inner {
                engine,
                pool,
                sender,
                started: OnceCell::new(),
                shutdown,
            }),
        })
    }

    /// The engine whose events these are.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Every event from now on. The reading tasks start with the first
    /// subscriber, from the ends of the streams as they are before this
    /// returns: whatever a subscriber reads from the streams after it
    /// comes live too.
    pub async fn subscribe(&self) -> Result<broadcast::Receiver<Arc<Event>>, EngineError> {
        let receiver = self.inner.sender.subscribe();
        let inner = &self.inner;
        inner
            .started
            .get_or_try_init(|| async {
                let mut ends = Vec::new();
                for p in inner.engine.partitions().all() {
                    ends.push((p, inner.engine.events_extent(p).await?.last));
                }
                for (p, end) in ends {
                    tokio::spawn(follow(inner.clone(), p, end));
                }
                Ok::<(), EngineError>(())
            })
            .await?;
        Ok(receiver)
    }
}

/// Follows partition `p`'s events stream after `last` until shutdown;
/// after an error, goes on from the last event passed on.
async fn follow(inner: Arc<Inner>, p: Partition, mut last: StreamId) {
    while !inner.shutdown.is_cancelled() {
        let run = async {
            let mut conn = connection(&inner.pool).await?;
            loop {
                let read = read_after(&mut conn, &inner.engine, p, last).await?;
                for event in read {
                    last = event.stream_id;
                    // No receivers is not an error: nobody is listening now.
                    let _ = inner.sender.send(Arc::new(event));
                }
            }
        };
        let failed: anyhow::Result<()> = tokio::select! {
            r = run => r,
            () = inner.shutdown.cancelled() => return,
        };
        if let Err(e) = failed {
            tracing::warn!(partition = p.0, error = ?e, "reading live events; trying again");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = inner.shutdown.cancelled() => return,
            }
        }
    }
}

/// A connection of its own, for blocking reads.
enum Dedicated {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

async fn connection(pool: &Pool) -> anyhow::Result<Dedicated> {
    Ok(match pool {
        Pool::Single(p) => Dedicated::Single(p.get().await.context("an events connection")?),
        Pool::Cluster(p) => Dedicated::Cluster(p.get().await.context("an events connection")?),
    })
}

type StreamReply = Option<Vec<(String, Vec<(String, HashMap<String, String>)>)>>;

/// Partition `p`'s events after `from`, waiting up to BLOCK for one.
async fn read_after(
    conn: &mut Dedicated,
    engine: &Engine,
    p: Partition,
    from: StreamId,
) -> anyhow::Result<Vec<Event>> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT")
        .arg(READ_COUNT)
        .arg("BLOCK")
        .arg(BLOCK.as_millis() as u64)
        .arg("STREAMS")
        .arg(engine.keys().part(p).events())
        .arg(from.to_string());
    let value = match conn {
        Dedicated::Single(c) => c.req_packed_command(&cmd).await?,
        Dedicated::Cluster(c) => c.req_packed_command(&cmd).await?,
    };
    let reply: StreamReply = redis::from_redis_value(&value)?;
    let mut out = Vec::new();
    for (_, entries) in reply.unwrap_or_default() {
        for (id, fields) in entries {
            out.push(crate::engine::event_of(p, &id, &fields)?);
        }
    }
    Ok(out)
}
