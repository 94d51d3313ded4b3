//! Reading the events streams (one per partition) that the scripts write
//! (`flush_events` in lua/common.lua): what a reader catching up reads, and
//! how far back each stream still goes. Live events come from blocking
//! reads on connections of their own (`crate::events`).

use super::{replies, Engine, EngineError};
use crate::domain::{Event, Partition, StreamId};
use redis::Value;
use std::collections::HashMap;

/// How far a partition's events stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventsExtent {
    /// The id of its newest event (0-0: none yet).
    pub last: StreamId,
    /// The newest id of an event it no longer has (trimmed, or lost with
    /// Redis's data): a reader that saw an older one missed events.
    pub gone: StreamId,
}

/// An events stream entry as an event (for readers outside the engine).
pub fn event_of(p: Partition, id: &str, fields: &HashMap<String, String>) -> anyhow::Result<Event> {
    replies::event(p, id, fields)
}

impl Engine {
    /// Partition `p`'s events after `after`, oldest first, at most `count`.
    pub async fn events_after(
        &self,
        p: Partition,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<Event>, EngineError> {
        let raw = self
            .entries_after(self.keys.part(p).events(), after, count)
            .await?;
        raw.iter()
            .map(|(id, fields)| replies::event(p, id, fields).map_err(EngineError::Internal))
            .collect()
    }

    /// How far partition `p`'s events stream goes.
    pub async fn events_extent(&self, p: Partition) -> Result<EventsExtent, EngineError> {
        let key = self.keys.part(p).events();
        let info: Value = self
            .run(|mut conn| async move {
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await?;
                if !exists {
                    return Ok(Value::Nil);
                }
                redis::cmd("XINFO")
                    .arg("STREAM")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let fields: HashMap<String, Value> = match info {
            Value::Nil => return Ok(EventsExtent::default()),
            Value::Map(pairs) => pairs
                .into_iter()
                .filter_map(|(k, v)| redis::from_redis_value::<String>(&k).ok().map(|k| (k, v)))
                .collect(),
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, v] => redis::from_redis_value::<String>(k)
                        .ok()
                        .map(|k| (k, v.clone())),
                    _ => None,
                })
                .collect(),
            other => {
                return Err(EngineError::Internal(anyhow::anyhow!(
                    "unexpected XINFO STREAM reply {other:?}"
                )))
            }
        };
        let id = |name: &str| -> Result<StreamId, EngineError> {
            let text: String = fields
                .get(name)
                .map(redis::from_redis_value)
                .transpose()
                .map_err(|e| EngineError::Internal(e.into()))?
                .unwrap_or_else(|| "0-0".to_owned());
            // (a sequence past i64, which Redis allows, is the largest)
            let (ms, seq) = text
                .split_once('-')
                .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)))
                .ok_or_else(|| EngineError::Internal(anyhow::anyhow!("bad stream id {text:?}")))?;
            let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            Ok(StreamId {
                ms: clamp(ms),
                seq: clamp(seq),
            })
        };
        Ok(EventsExtent {
            last: id("last-generated-id")?,
            gone: id("max-deleted-entry-id")?,
        })
    }

    /// Drops partition `p`'s events older than `keep` and beyond the
    /// `most` newest (lua/trim_events.lua: it records what it dropped, so
    /// an older position is known to have missed events). How many it
    /// dropped.
    pub async fn trim_events(
        &self,
        p: Partition,
        keep: std::time::Duration,
        most: usize,
    ) -> Result<i64, EngineError> {
        let keys = self.keys.part(p);
        let args = vec![
            keys.base().to_owned(),
            keep.as_millis().to_string(),
            most.to_string(),
        ];
        let reply = self
            .script(p, &self.scripts.trim_events, keys.events(), args)
            .await?;
        reply
            .code
            .parse()
            .map_err(|_| EngineError::Internal(anyhow::anyhow!("trim_events replied {reply:?}")))
    }
}
