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
        let key = self.keys.part(p).events();
        let raw: Vec<(String, HashMap<String, String>)> = self
            .run(|mut conn| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(format!("({after}"))
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn)
                    .await
            })
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
            text.parse()
                .map_err(|m: String| EngineError::Internal(anyhow::anyhow!(m)))
        };
        Ok(EventsExtent {
            last: id("last-generated-id")?,
            gone: id("max-deleted-entry-id")?,
        })
    }

    /// Redis's clock, in ms (the scripts' time).
    pub async fn redis_time_ms(&self) -> Result<i64, EngineError> {
        let (secs, micros): (i64, i64) = self
            .run(|mut conn| async move { redis::cmd("TIME").query_async(&mut conn).await })
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Drops partition `p`'s events older than `min_ms` (about: whole
    /// stream nodes only, so some may stay a little longer).
    pub async fn trim_events(&self, p: Partition, min_ms: i64) -> Result<(), EngineError> {
        let key = self.keys.part(p).events();
        self.run(|mut conn| async move {
            redis::cmd("XTRIM")
                .arg(key)
                .arg("MINID")
                .arg("~")
                .arg(format!("{min_ms}-0"))
                .query_async::<i64>(&mut conn)
                .await
        })
        .await?;
        Ok(())
    }
}
