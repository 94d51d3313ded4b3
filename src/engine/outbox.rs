//! The outbox streams (one per partition) and the order id index: what the
//! ledger's drain reads, and where a pending order is found.

use super::{replies, Engine, EngineError};
use crate::domain::{Order, OrderId, OutboxEntry, Partition, ReservationId, StreamId};
use std::collections::HashMap;

impl Engine {
    /// A committed order still known to Redis (through its hold).
    pub async fn order(&self, order_id: &OrderId) -> Result<Option<Order>, EngineError> {
        let key = self.keys.order(order_id);
        let hold_id: Option<String> = self
            .run(|mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        let Some(id) = hold_id.as_deref().and_then(ReservationId::parse) else {
            return Ok(None);
        };
        match self.hold(&id).await? {
            Some(hold) if hold.order_id.as_ref() == Some(order_id) => {
                Ok(Some(replies::order_of(&hold)?))
            }
            _ => Ok(None),
        }
    }

    /// Partition `p`'s outbox entries after `after`, oldest first, at most
    /// `count`.
    pub async fn outbox_after(
        &self,
        p: Partition,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<OutboxEntry>, EngineError> {
        let raw = self
            .entries_after(self.keys.part(p).outbox(), after, count)
            .await?;
        raw.iter()
            .map(|(id, fields)| replies::outbox_entry(p, id, fields).map_err(EngineError::Internal))
            .collect()
    }

    /// Stream `key`'s entries after `after`, oldest first, at most `count`.
    pub(super) async fn entries_after(
        &self,
        key: String,
        after: StreamId,
        count: usize,
    ) -> Result<Vec<(String, HashMap<String, String>)>, EngineError> {
        self.run(|mut conn| async move {
            redis::cmd("XRANGE")
                .arg(key)
                .arg(format!("({after}"))
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn)
                .await
        })
        .await
    }

    /// One outbox entry of partition `p` by id.
    pub async fn outbox_entry(
        &self,
        p: Partition,
        id: StreamId,
    ) -> Result<Option<OutboxEntry>, EngineError> {
        let key = self.keys.part(p).outbox();
        let raw: Vec<(String, HashMap<String, String>)> = self
            .run(|mut conn| async move {
                redis::cmd("XRANGE")
                    .arg(key)
                    .arg(id.to_string())
                    .arg(id.to_string())
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        raw.first()
            .map(|(id, fields)| replies::outbox_entry(p, id, fields).map_err(EngineError::Internal))
            .transpose()
    }

    /// Drops partition `p`'s outbox entries older than `min` (they are in
    /// Postgres).
    pub async fn trim_outbox(&self, p: Partition, min: StreamId) -> Result<(), EngineError> {
        let key = self.keys.part(p).outbox();
        self.run(|mut conn| async move {
            redis::cmd("XTRIM")
                .arg(key)
                .arg("MINID")
                .arg(min.to_string())
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
        .map(drop)
    }
}
