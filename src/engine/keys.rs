//! Redis key naming. Every key carries the partition hash tag `{p0}` so that
//! all keys a script touches live in one Redis Cluster slot; version 1 runs
//! one partition, and more partitions are an extension of this module.

use crate::domain::{OrderId, ReservationId};

/// The keys of one deployment (one key prefix) in one partition.
#[derive(Debug, Clone)]
pub struct Keys {
    base: String,
}

impl Keys {
    /// Keys under `<prefix>:{p0}:`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            base: format!("{prefix}:{{p0}}:"),
        }
    }

    /// The prefix the scripts build derived keys from.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Every SKU's available count (hash, sku -> on_hand - held + backorder
    /// limit): the one counter a reserve reads and writes.
    pub fn avail(&self) -> String {
        format!("{}avail", self.base)
    }

    /// Every SKU's on_hand (hash).
    pub fn on_hand(&self) -> String {
        format!("{}onhand", self.base)
    }

    /// Backorder limits that are not 0 (hash).
    pub fn backorder(&self) -> String {
        format!("{}bo", self.base)
    }

    /// Per-customer limits and sale starts, "pcl ssa" with '-' for none
    /// (hash; only SKUs with one).
    pub fn rules(&self) -> String {
        format!("{}rules", self.base)
    }

    /// A hold (string: the record of lua/common.lua).
    pub fn hold(&self, id: &ReservationId) -> String {
        format!("{}hold:{id}", self.base)
    }

    /// The reaper's queue: hold ids by expiry (sorted set).
    pub fn expiry(&self) -> String {
        format!("{}exp", self.base)
    }

    /// The hold an order id belongs to (string).
    pub fn order(&self, order_id: &OrderId) -> String {
        format!("{}order:{order_id}", self.base)
    }

    /// The outbox (stream).
    pub fn outbox(&self) -> String {
        format!("{}outbox", self.base)
    }

    /// Present once Redis holds the state rebuilt from the ledger (string).
    pub fn ready(&self) -> String {
        format!("{}ready", self.base)
    }

    /// The lease of the instance rebuilding a Redis that lost its data.
    pub fn rebuild_lock(&self) -> String {
        format!("{}rebuild-lock", self.base)
    }

    /// The once-only mark of a restocking return (string).
    pub fn return_mark(&self, return_id: &str) -> String {
        format!("{}marks:ret:{return_id}", self.base)
    }

    /// A stored idempotent response (string).
    pub fn idempotency(&self, caller: &str, key: &str) -> String {
        format!("{}idem:{caller}:{key}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_partition_tag() {
        let keys = Keys::new("shop");
        assert_eq!(keys.avail(), "shop:{p0}:avail");
        assert_eq!(keys.outbox(), "shop:{p0}:outbox");
        assert!(keys.idempotency("c", "k").starts_with("shop:{p0}:"));
    }
}
