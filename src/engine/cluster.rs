//! Calls to a Redis Cluster: each goes to the master serving its key's slot,
//! over one multiplexed connection per node (a `ConnectionManager`, which
//! reconnects by itself), by a slot map read with `CLUSTER SLOTS` and read
//! again whenever a node answers MOVED or cannot be reached.
//!
//! stockhold's calls each touch one partition, so one slot, which keeps
//! this small. The redis crate's own cluster connection was used first: under
//! load its driver stopped for good some seconds after a failover or a slot
//! move (every call timed out, on every node, until the process was killed;
//! seen in the cluster fault tests with redis 0.27 and 0.32). Here there is
//! no driver of our own: a call that fails fails alone, and the next one
//! routes by a fresh map.

use anyhow::{anyhow, Context};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_routing::{get_slot, Routable};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::OnceCell;

/// The slot map is read again at most this often.
const REFRESH_GAP: Duration = Duration::from_millis(100);

/// Which node serves which slots.
#[derive(Default)]
struct SlotMap {
    /// (first slot, last slot, master address), by first slot.
    ranges: Vec<(u16, u16, String)>,
    /// Every node the map names, masters and replicas, to ask next time.
    nodes: Vec<String>,
}

impl SlotMap {
    fn master(&self, slot: u16) -> Option<&str> {
        let at = self.ranges.partition_point(|r| r.0 <= slot);
        let (first, last, addr) = self.ranges.get(at.checked_sub(1)?)?;
        (*first <= slot && slot <= *last).then_some(addr.as_str())
    }

    /// Parses a `CLUSTER SLOTS` answer of the node at `asked`.
    fn parse(value: &Value, asked: &str) -> anyhow::Result<SlotMap> {
        let Value::Array(entries) = value else {
            return Err(anyhow!("CLUSTER SLOTS answered {value:?}"));
        };
        let mut map = SlotMap::default();
        for entry in entries {
            let Value::Array(fields) = entry else {
                return Err(anyhow!("CLUSTER SLOTS entry {entry:?}"));
            };
            let int = |v: Option<&Value>| match v {
                Some(Value::Int(n)) => u16::try_from(*n).ok(),
                _ => None,
            };
            let (Some(first), Some(last)) = (int(fields.first()), int(fields.get(1))) else {
                return Err(anyhow!("CLUSTER SLOTS entry {entry:?}"));
            };
            let mut addrs = Vec::new();
            for node in &fields[2..] {
                let Value::Array(node) = node else { continue };
                let host = match node.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                // An empty host means the node that was asked.
                let host = if host.is_empty() || host == "?" {
                    asked.rsplit_once(':').map_or("", |h| h.0).to_owned()
                } else {
                    host
                };
                if let Some(port) = int(node.get(1)) {
                    addrs.push(format!("{host}:{port}"));
                }
            }
            let Some(master) = addrs.first() else {
                continue;
            };
            map.ranges.push((first, last, master.clone()));
            map.nodes.extend(addrs);
        }
        map.ranges.sort();
        map.nodes.sort();
        map.nodes.dedup();
        if map.ranges.is_empty() {
            return Err(anyhow!("CLUSTER SLOTS at {asked} names no slot"));
        }
        Ok(map)
    }
}

/// The cluster: its seed nodes, its slot map and a connection per node.
pub(crate) struct Router {
    seeds: Vec<String>,
    config: ConnectionManagerConfig,
    timeout: Duration,
    io: Handle,
    map: RwLock<SlotMap>,
    nodes: Mutex<HashMap<String, Arc<OnceCell<ConnectionManager>>>>,
    /// When the map was last read; held while it is read, so one caller
    /// reads it and the others wait for that.
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl Router {
    /// A router for the cluster whose seed nodes `urls` lists (comma
    /// separated `redis://host:port/`); connects on first use, on `io`.
    pub fn new(urls: &str, timeout: Duration, io: Handle) -> anyhow::Result<Router> {
        let mut seeds = Vec::new();
        for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            let info: redis::ConnectionInfo = url.parse().context("a seed node URL")?;
            match info.addr {
                redis::ConnectionAddr::Tcp(host, port) => seeds.push(format!("{host}:{port}")),
                other => return Err(anyhow!("a cluster seed node must be TCP, not {other}")),
            }
        }
        anyhow::ensure!(!seeds.is_empty(), "no seed node in redis.url");
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        Ok(Router {
            seeds,
            config,
            timeout,
            io,
            map: RwLock::default(),
            nodes: Mutex::default(),
            refreshed: tokio::sync::Mutex::new(None),
        })
    }

    /// Node connections opened so far.
    pub fn opened(&self) -> usize {
        let nodes = self.nodes.lock().expect("node map");
        nodes.values().filter(|c| c.initialized()).count()
    }

    /// The connection to the node at `addr` (made on the I/O thread).
    async fn node(&self, addr: &str) -> RedisResult<ConnectionManager> {
        let cell = {
            let mut nodes = self.nodes.lock().expect("node map");
            nodes.entry(addr.to_owned()).or_default().clone()
        };
        cell.get_or_try_init(|| async {
            let client = redis::Client::open(format!("redis://{addr}/"))?;
            let connect = ConnectionManager::new_with_config(client, self.config.clone());
            match self.io.spawn(connect).await {
                Ok(made) => made,
                Err(e) => Err(RedisError::from((
                    ErrorKind::IoError,
                    "connecting on the I/O thread",
                    e.to_string(),
                ))),
            }
        })
        .await
        .cloned()
    }

    /// The master serving `slot` (any master for `None`), reading the map
    /// first if there is none yet.
    async fn master(&self, slot: Option<u16>) -> RedisResult<String> {
        for _ in 0..2 {
            {
                let map = self.map.read().expect("slot map");
                let found = match slot {
                    Some(slot) => map.master(slot),
                    None => map.ranges.first().map(|r| r.2.as_str()),
                };
                if let Some(addr) = found {
                    return Ok(addr.to_owned());
                }
            }
            self.refresh().await;
        }
        Err(RedisError::from((
            ErrorKind::ClusterConnectionNotFound,
            "no node serves this slot",
        )))
    }

    /// Reads the slot map again from the first node that answers (unless
    /// it was read less than REFRESH_GAP ago).
    async fn refresh(&self) {
        self.refresh_asking(None).await;
    }

    /// As `refresh`, asking `first` first: the node a MOVED named, which
    /// knows the new layout while others may not have heard of it yet.
    async fn refresh_asking(&self, first: Option<&str>) {
        let mut refreshed = self.refreshed.lock().await;
        if refreshed.is_some_and(|at| at.elapsed() < REFRESH_GAP) {
            return;
        }
        let mut candidates: Vec<String> = first.into_iter().map(str::to_owned).collect();
        candidates.extend(self.map.read().expect("slot map").nodes.iter().cloned());
        candidates.extend(self.seeds.iter().cloned());
        candidates.dedup();
        for addr in candidates {
            let asked = async {
                let mut conn = self.node(&addr).await?;
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async::<Value>(&mut conn)
                    .await
            };
            let Ok(Ok(value)) = tokio::time::timeout(self.timeout, asked).await else {
                continue;
            };
            match SlotMap::parse(&value, &addr) {
                Ok(map) => {
                    *self.map.write().expect("slot map") = map;
                    break;
                }
                Err(e) => tracing::warn!(node = %addr, error = %e, "unusable CLUSTER SLOTS answer"),
            }
        }
        *refreshed = Some(Instant::now());
    }
}

/// A handle for one call (or a few calls in a row, as a script call with
/// its `SCRIPT LOAD`): each command goes to the master of its key's slot; a
/// command without a key goes where the last one with a key went.
#[derive(Clone)]
pub(crate) struct Routed {
    router: Arc<Router>,
    last: Option<String>,
}

impl Routed {
    pub fn new(router: Arc<Router>) -> Routed {
        Routed { router, last: None }
    }

    /// Runs `cmd` (which names no key) on the master serving `key`'s slot.
    /// `cmd` goes in one round trip behind an `EXISTS key`, so a node that
    /// no longer serves the slot (a master turned replica, while the map
    /// is not read again yet) says MOVED instead of answering `cmd` for
    /// the wrong server; the call then goes where the MOVED points.
    pub async fn on_master_of(&mut self, key: &str, cmd: &Cmd) -> RedisResult<Value> {
        let mut addr = self.router.master(Some(get_slot(key.as_bytes()))).await?;
        for _ in 0..2 {
            self.last = Some(addr.clone());
            let mut conn = self.router.node(&addr).await?;
            let mut pipe = redis::pipe();
            pipe.cmd("EXISTS").arg(key).add_command(cmd.clone());
            let mut answers: Vec<Value> = match conn.req_packed_commands(&pipe, 0, 2).await {
                Ok(answers) => answers,
                Err(e) => return self.after(Err(e)),
            };
            let answer = answers.pop().unwrap_or(Value::Nil);
            match answers.pop().map(Value::extract_error) {
                Some(Err(e)) if e.kind() == ErrorKind::Moved => {
                    let Some((to, _)) = e.redirect_node() else {
                        return Err(e);
                    };
                    addr = to.to_owned();
                    self.router.refresh_asking(Some(&addr)).await;
                }
                _ => return self.after(answer.extract_error()),
            }
        }
        Err(RedisError::from((
            ErrorKind::ClusterConnectionNotFound,
            "moved twice while asking for the master of a slot",
        )))
    }

    async fn target(&mut self, slot: Option<u16>) -> RedisResult<String> {
        let addr = match (slot, &self.last) {
            (None, Some(last)) => last.clone(),
            _ => self.router.master(slot).await?,
        };
        self.last = Some(addr.clone());
        Ok(addr)
    }

    /// After an answer that says the map changed (or a node that is gone),
    /// has it read again in the background: this call fails at once, and
    /// the next ones route by the new map. (Waiting here would hold every
    /// failing call for as long as reading the map takes while a node does
    /// not answer.)
    fn after<T>(&self, answer: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &answer {
            if stale_map(e) {
                self.refresh_later();
            }
        }
        answer
    }

    fn refresh_later(&self) {
        let router = self.router.clone();
        tokio::spawn(async move { router.refresh().await });
    }

    async fn command(&mut self, cmd: &Cmd) -> RedisResult<Value> {
        let addr = self.target(slot_of(cmd)).await?;
        let mut conn = self.router.node(&addr).await?;
        // A server's error reply comes as a value; as an error here, so a
        // redirect is seen (callers turn it into one anyway).
        match conn
            .req_packed_command(cmd)
            .await
            .and_then(Value::extract_error)
        {
            // The slot moved: once to where the node says it is now.
            Err(e) if e.kind() == ErrorKind::Moved => {
                let to = e.redirect_node().map(|(addr, _)| addr.to_owned());
                self.router.refresh_asking(to.as_deref()).await;
                let Some(to) = to else { return Err(e) };
                self.last = Some(to.clone());
                let mut conn = self.router.node(&to).await?;
                let answer = conn.req_packed_command(cmd).await;
                self.after(answer.and_then(Value::extract_error))
            }
            // The slot is being moved and the key is there already: ask
            // the new node, saying so.
            Err(e) if e.kind() == ErrorKind::Ask => {
                let Some((to, _)) = e.redirect_node() else {
                    return Err(e);
                };
                let mut conn = self.router.node(to).await?;
                let mut asking = redis::pipe();
                asking.cmd("ASKING").ignore().add_command(cmd.clone());
                let mut answers = asking.query_async::<Vec<Value>>(&mut conn).await?;
                answers.pop().ok_or_else(|| {
                    RedisError::from((ErrorKind::ResponseError, "no answer after ASKING"))
                })
            }
            answer => self.after(answer),
        }
    }

    async fn pipeline(
        &mut self,
        pipe: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let slot = pipe.cmd_iter().find_map(slot_of);
        let addr = self.target(slot).await?;
        let mut conn = self.router.node(&addr).await?;
        let answer = conn.req_packed_commands(pipe, offset, count).await;
        // A redirect inside a pipeline (a MULTI aborted by it) fails the
        // pipeline; the next call routes by a fresh map.
        let redirected = answer.as_ref().is_ok_and(|values| {
            values.iter().any(|v| match v {
                Value::ServerError(e) => stale_map(&RedisError::from(e.clone())),
                _ => false,
            })
        });
        if redirected {
            self.refresh_later();
        }
        self.after(answer)
    }
}

impl ConnectionLike for Routed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.command(cmd))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.pipeline(cmd, offset, count))
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// Whether an error means the slot map may be out of date: the slot moved,
/// the cluster is reconfiguring, or the node is unreachable.
fn stale_map(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Moved
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::TryAgain
            | ErrorKind::ReadOnly
    ) || e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
}

/// The slot of a command's key; `None` for a command without one.
fn slot_of(cmd: &Cmd) -> Option<u16> {
    let name = cmd.arg_idx(0)?.to_ascii_uppercase();
    let key = match name.as_slice() {
        b"EVALSHA" | b"EVAL" => {
            let keys: u64 = std::str::from_utf8(cmd.arg_idx(2)?).ok()?.parse().ok()?;
            if keys == 0 {
                return None;
            }
            cmd.arg_idx(3)?
        }
        // XINFO STREAM <key>
        b"XINFO" => cmd.arg_idx(2)?,
        b"PING" | b"INFO" | b"TIME" | b"SCRIPT" | b"CLUSTER" | b"ASKING" | b"MULTI" | b"EXEC"
        | b"DISCARD" | b"SCAN" | b"CLIENT" | b"CONFIG" | b"WAIT" | b"ROLE" | b"DBSIZE" => {
            return None
        }
        _ => cmd.arg_idx(1)?,
    };
    Some(get_slot(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_map_names_the_master_of_each_slot_range() {
        let answer = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7001), bulk("id1")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(7005), bulk("id5")]),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(16383),
                Value::Array(vec![bulk(""), Value::Int(7002), bulk("id2")]),
            ]),
        ]);
        let map = SlotMap::parse(&answer, "10.0.0.9:7003").unwrap();
        assert_eq!(map.master(0), Some("127.0.0.1:7001"));
        assert_eq!(map.master(5460), Some("127.0.0.1:7001"));
        assert_eq!(map.master(5461), Some("10.0.0.9:7002"));
        assert_eq!(map.master(16383), Some("10.0.0.9:7002"));
        assert_eq!(
            map.nodes,
            ["10.0.0.9:7002", "127.0.0.1:7001", "127.0.0.1:7005"]
        );
    }

    #[test]
    fn a_slot_no_range_covers_has_no_master() {
        let answer = Value::Array(vec![Value::Array(vec![
            Value::Int(100),
            Value::Int(200),
            Value::Array(vec![bulk("h"), Value::Int(1)]),
        ])]);
        let map = SlotMap::parse(&answer, "h:1").unwrap();
        assert_eq!(map.master(99), None);
        assert_eq!(map.master(201), None);
        assert_eq!(map.master(150), Some("h:1"));
    }

    #[test]
    fn commands_route_by_their_key_and_scripts_by_their_first_key() {
        let key = "p:{p3}:avail";
        let slot = get_slot(key.as_bytes());
        assert_eq!(slot_of(redis::cmd("HMGET").arg(key).arg("A")), Some(slot));
        assert_eq!(
            slot_of(redis::cmd("EVALSHA").arg("abc").arg(1).arg(key).arg("x")),
            Some(slot)
        );
        assert_eq!(slot_of(redis::cmd("EVALSHA").arg("abc").arg(0)), None);
        assert_eq!(
            slot_of(redis::cmd("XINFO").arg("STREAM").arg(key)),
            Some(get_slot(key.as_bytes()))
        );
        assert_eq!(slot_of(redis::cmd("SCRIPT").arg("LOAD").arg("x")), None);
        assert_eq!(slot_of(&redis::cmd("PING")), None);
    }
}
