//! Outbox events: every change of `on_hand`, appended by the Lua script that
//! makes it and persisted to the ledger afterwards.

use super::{Order, OrderId, Partition, ReservationId, Sku};
use chrono::{DateTime, Utc};
use std::fmt;
use std::str::FromStr;

/// A Redis stream entry id, `ms-seq`; ordered as the stream orders entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    /// Milliseconds part.
    pub ms: i64,
    /// Sequence within the millisecond.
    pub seq: i64,
}

impl FromStr for StreamId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a stream id: {s:?}");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        // (digits only: Redis ids have no sign)
        let part = |t: &str| -> Result<i64, String> {
            let n: u64 = t.parse().map_err(|_| bad())?;
            i64::try_from(n).map_err(|_| bad())
        };
        Ok(StreamId {
            ms: part(ms)?,
            seq: part(seq)?,
        })
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// One sold (or returned) line with the live `on_hand` right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoldLine {
    /// The SKU.
    pub sku: Sku,
    /// Units sold.
    pub qty: i64,
    /// `on_hand` in Redis right after this sale.
    pub on_hand_after: i64,
}

/// Units of a line held from a channel's allocation and sold from it (or
/// returned to it), with the allocation's share of on_hand right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolLine {
    /// The SKU.
    pub sku: Sku,
    /// The channel whose allocation it is.
    pub channel: String,
    /// Units.
    pub qty: i64,
    /// The allocation's share right after.
    pub share_after: i64,
}

impl PoolLine {
    /// The ledger account of the allocation (see `pool_account`).
    pub fn account(&self) -> String {
        pool_account(&self.sku, &self.channel)
    }
}

/// A change of one allocation's share by a SKU set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationChange {
    /// The channel.
    pub channel: String,
    /// Its share right after (0 when the allocation was removed).
    pub share_after: i64,
    /// Change of its share (units moved from the shared pool, or back).
    pub delta: i64,
}

/// The ledger account (and Redis field) of channel `channel`'s allocation
/// of `sku`: `sku@channel`. A SKU never contains `@`, so the name is never
/// a SKU's.
pub fn pool_account(sku: &Sku, channel: &str) -> String {
    format!("{sku}@{channel}")
}

/// The SKU and channel of an allocation's account; `None` for a SKU's own.
pub fn split_pool_account(name: &str) -> Option<(&str, &str)> {
    name.split_once('@')
}

/// A SKU's settings as last set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuSettings {
    /// Units that may be sold beyond `on_hand`.
    pub backorder_limit: i64,
    /// Most units per customer, if limited.
    pub per_customer_limit: Option<i64>,
    /// When sales start, if set.
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// Partitions the SKU's stock is spread over (1: its own only).
    pub buckets: i32,
    /// The most partitions it was ever spread over.
    pub bucket_span: i32,
    /// Units no reservation may hold.
    pub safety_stock: i64,
    /// The channels with an allocation (in the order set).
    pub allocations: Vec<String>,
    /// Its low-stock threshold, if any.
    pub low_stock: Option<i64>,
}

/// What an outbox entry records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxEvent {
    /// A reservation was committed.
    Commit {
        /// The order (with `persisted: false`), with every line of the basket.
        order: Order,
        /// The lines sold in this partition (all of them, unless the basket
        /// spans partitions), with `on_hand` after the sale.
        sold: Vec<SoldLine>,
        /// The units of those lines sold from the channel's allocations.
        pools: Vec<PoolLine>,
    },
    /// A SKU was created or its stock or settings were set.
    Sku {
        /// The SKU.
        sku: Sku,
        /// Whether this entry created it.
        created: bool,
        /// Change of `on_hand`.
        delta: i64,
        /// `on_hand` right after the change.
        on_hand_after: i64,
        /// Settings after the change.
        settings: SkuSettings,
        /// Allocations whose share changed.
        allocations: Vec<AllocationChange>,
        /// Change of the safety stock.
        safety_delta: i64,
        /// When (Redis time).
        at: DateTime<Utc>,
    },
    /// A relative change of `on_hand`.
    Adjustment {
        /// The SKU.
        sku: Sku,
        /// The client's id of the adjustment.
        adjustment_id: String,
        /// Change of `on_hand`.
        delta: i64,
        /// `on_hand` right after.
        on_hand_after: i64,
        /// Why, if said.
        reason: Option<String>,
        /// When (Redis time).
        at: DateTime<Utc>,
    },
    /// The part of a committed basket's sale made in another partition than
    /// the basket's home: stock movements only (the order is in the home's
    /// `Commit` entry).
    Part {
        /// The order.
        order_id: OrderId,
        /// The reservation committed.
        reservation_id: ReservationId,
        /// This partition's lines with `on_hand` after the sale.
        sold: Vec<SoldLine>,
        /// The units of those lines sold from the channel's allocations.
        pools: Vec<PoolLine>,
        /// When the sale was made (the home's time).
        at: DateTime<Utc>,
    },
    /// Units moved between two buckets of a SKU spread over several
    /// partitions: taken (negative) in one, given (positive) in the other.
    Transfer {
        /// The SKU.
        sku: Sku,
        /// The transfer's id (both entries carry it).
        transfer_id: String,
        /// Change of this bucket's on_hand.
        delta: i64,
        /// This bucket's on_hand right after.
        on_hand_after: i64,
        /// When (Redis time).
        at: DateTime<Utc>,
    },
    /// Returned units put back into `on_hand`.
    Return {
        /// The client's id of the return.
        return_id: String,
        /// The order returned against.
        order_id: String,
        /// Units back per SKU, with `on_hand` right after.
        lines: Vec<SoldLine>,
        /// The units of those lines back in a channel's allocation.
        pools: Vec<PoolLine>,
        /// When (Redis time).
        at: DateTime<Utc>,
    },
}

/// An outbox entry: its stream id and what it records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The partition whose stream it is in.
    pub partition: Partition,
    /// Position in the stream; with the partition, the ledger's
    /// idempotency key.
    pub id: StreamId,
    /// The change.
    pub event: OutboxEvent,
}

impl OutboxEvent {
    /// The change of `on_hand` this event made, per ledger account: each
    /// SKU's, and each allocation's share (`pool_account`).
    pub fn on_hand_deltas(&self) -> Vec<(String, i64)> {
        let pooled = |pools: &[PoolLine], sign: i64| {
            pools
                .iter()
                .map(move |p| (p.account(), sign * p.qty))
                .collect::<Vec<_>>()
        };
        match self {
            OutboxEvent::Commit { sold, pools, .. } | OutboxEvent::Part { sold, pools, .. } => sold
                .iter()
                .map(|s| (s.sku.to_string(), -s.qty))
                .chain(pooled(pools, -1))
                .collect(),
            OutboxEvent::Sku {
                sku,
                delta,
                allocations,
                ..
            } => std::iter::once((sku.to_string(), *delta))
                .chain(
                    allocations
                        .iter()
                        .map(|a| (pool_account(sku, &a.channel), a.delta)),
                )
                .collect(),
            OutboxEvent::Adjustment { sku, delta, .. }
            | OutboxEvent::Transfer { sku, delta, .. } => vec![(sku.to_string(), *delta)],
            OutboxEvent::Return { lines, pools, .. } => lines
                .iter()
                .map(|l| (l.sku.to_string(), l.qty))
                .chain(pooled(pools, 1))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_order_numerically_not_as_text() {
        let a: StreamId = "9-5".parse().unwrap();
        let b: StreamId = "10-0".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "10-0");
        assert!("10".parse::<StreamId>().is_err());
    }
}
