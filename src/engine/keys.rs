//! Redis key naming. Every key of a partition starts with its base
//! `<prefix>:{pN}:`; the braces make `pN` the Redis Cluster hash tag, so all
//! keys a script touches live in one slot, and partitions spread over the
//! cluster's slots (and masters).

use crate::domain::{OrderId, Partition, Partitions, ReservationId, Sku};
use std::sync::Arc;

/// The keys of one deployment (one key prefix), over all its partitions.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: Arc<str>,
    partitions: Partitions,
    bases: Arc<[String]>,
}

impl Keys {
    /// Keys under `<prefix>:{pN}:` for each of `partitions`.
    pub fn new(prefix: &str, partitions: Partitions) -> Self {
        Keys {
            prefix: prefix.into(),
            partitions,
            bases: partitions
                .all()
                .map(|p| format!("{prefix}:{{{}}}:", p.name()))
                .collect(),
        }
    }

    /// The partitions.
    pub fn partitions(&self) -> Partitions {
        self.partitions
    }

    /// The keys of partition `p`.
    pub fn part(&self, p: Partition) -> PartKeys<'_> {
        PartKeys {
            base: &self.bases[p.0 as usize],
        }
    }

    /// The partition of a SKU.
    pub fn of_sku(&self, sku: &Sku) -> Partition {
        self.partitions.of_sku(sku)
    }

    /// The home partition of a reservation.
    pub fn home(&self, id: &ReservationId) -> Partition {
        self.partitions.home_of(id)
    }

    /// Where the partition count this deployment runs with is recorded, so
    /// instances with another count refuse to start (string).
    pub fn layout(&self) -> String {
        format!("{}:{{meta}}:layout", self.prefix)
    }

    /// A stored idempotent response (string), in a partition by its key.
    pub fn idempotency(&self, caller: &str, key: &str) -> String {
        let p = self.partitions.of_key(&[caller, key]);
        format!("{}idem:{caller}:{key}", self.bases[p.0 as usize])
    }

    /// The partition keeping an order id's index entry.
    pub fn order_partition(&self, order_id: &OrderId) -> Partition {
        self.partitions.of_key(&[order_id.as_str()])
    }

    /// Commits answered 202, per minute (hash, minute -> count), for the
    /// admin console; kept in partition 0.
    pub fn tally(&self) -> String {
        format!("{}tally:not_persisted", self.bases[0])
    }

    /// The hold an order id belongs to (string), in `order_partition`.
    pub fn order(&self, order_id: &OrderId) -> String {
        self.part(self.order_partition(order_id)).order(order_id)
    }
}

/// The keys of one partition.
#[derive(Debug, Clone, Copy)]
pub struct PartKeys<'a> {
    base: &'a str,
}

impl PartKeys<'_> {
    /// The prefix the scripts build derived keys from.
    pub fn base(&self) -> &str {
        self.base
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

    /// What is available of channel `channel`'s allocation of each SKU
    /// that has one (hash, sku -> its share - held from it).
    pub fn pool_avail(&self, channel: &str) -> String {
        format!("{}pavail:{channel}", self.base)
    }

    /// Channel `channel`'s share of each SKU's on_hand (hash).
    pub fn pool_share(&self, channel: &str) -> String {
        format!("{}pshare:{channel}", self.base)
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

    /// "buckets span" of SKUs spread over several partitions (hash; in the
    /// SKU's own partition).
    pub fn buckets(&self) -> String {
        format!("{}bk", self.base)
    }

    /// A hold's record in this partition (string, lua/common.lua).
    pub fn hold(&self, id: &ReservationId) -> String {
        format!("{}hold:{id}", self.base)
    }

    /// The reaper's queue: hold ids by expiry (sorted set).
    pub fn expiry(&self) -> String {
        format!("{}exp", self.base)
    }

    /// Commits of baskets over several partitions under way, by start time
    /// (sorted set): the reaper finishes those a crash cut off.
    pub fn committing(&self) -> String {
        format!("{}committing", self.base)
    }

    /// The hold an order id belongs to (string).
    pub fn order(&self, order_id: &OrderId) -> String {
        format!("{}order:{order_id}", self.base)
    }

    /// The outbox (stream).
    pub fn outbox(&self) -> String {
        format!("{}outbox", self.base)
    }

    /// What happened to stock (stream; see `crate::domain::Event`).
    pub fn events(&self) -> String {
        format!("{}events", self.base)
    }

    /// The run id of the Redis server this partition was rebuilt on (string).
    pub fn ready(&self) -> String {
        format!("{}ready", self.base)
    }

    /// The lease of the instance rebuilding this partition.
    pub fn rebuild_lock(&self) -> String {
        format!("{}rebuild-lock", self.base)
    }

    /// The once-only mark of a restocking return in this partition (string).
    pub fn return_mark(&self, return_id: &str) -> String {
        format!("{}marks:ret:{return_id}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_its_partition_tag() {
        let keys = Keys::new("shop", Partitions::new(4));
        assert_eq!(keys.part(Partition(0)).avail(), "shop:{p0}:avail");
        assert_eq!(keys.part(Partition(3)).outbox(), "shop:{p3}:outbox");
        assert!(keys.idempotency("c", "k").starts_with("shop:{p"));
        assert_eq!(keys.layout(), "shop:{meta}:layout");
    }
}
