//! Partitions of the live state: every SKU belongs to one, by a stable hash
//! of its name, and each partition's keys share one Redis Cluster hash tag,
//! so partitions spread over the cluster's masters. A reservation lives in
//! the partitions of its SKUs; its home partition (where its status is
//! decided) is written in its id.

use super::{ReservationId, Sku};
use std::fmt;

/// Most partitions a deployment may have (ids carry the home in 4 hex digits).
pub const MAX_PARTITIONS: u16 = 4096;

/// One partition, `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition(pub u16);

impl Partition {
    /// Its name in keys and in the ledger: `p` and the number.
    pub fn name(self) -> String {
        format!("p{}", self.0)
    }

    /// Parses a name made by `name`.
    pub fn parse(name: &str) -> Option<Partition> {
        name.strip_prefix('p')?.parse().ok().map(Partition)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// The partitions of a deployment and which one each thing belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    count: u16,
}

impl Partitions {
    /// `count` partitions (1..=MAX_PARTITIONS).
    pub fn new(count: u16) -> Partitions {
        assert!(
            (1..=MAX_PARTITIONS).contains(&count),
            "bad partition count {count}"
        );
        Partitions { count }
    }

    /// How many there are.
    pub fn count(self) -> u16 {
        self.count
    }

    /// Every partition, in the fixed order multi-partition steps take.
    pub fn all(self) -> impl Iterator<Item = Partition> {
        (0..self.count).map(Partition)
    }

    /// The partition of a name (a SKU, or a stock bucket of one): FNV-1a,
    /// mixed, which never changes, so a name stays where the rebuild put it.
    pub fn of_name(self, name: &str) -> Partition {
        Partition((mix(fnv1a(name.as_bytes())) % u64::from(self.count)) as u16)
    }

    /// The partition of a SKU.
    pub fn of_sku(self, sku: &Sku) -> Partition {
        self.of_name(sku.as_str())
    }

    /// The partition of bucket `b` of a SKU spread over several (bucket 0
    /// is the SKU's own partition).
    pub fn bucket(self, sku: &Sku, b: u16) -> Partition {
        Partition((self.of_sku(sku).0 + b % self.count) % self.count)
    }

    /// The bucket, of `buckets`, that a customer's lines of a spread SKU
    /// always go to (where the customer's count for a per-customer limit
    /// lives).
    pub fn bucket_of_customer(self, customer: &str, buckets: u16) -> u16 {
        (mix(fnv1a(customer.as_bytes())) % u64::from(buckets.max(1))) as u16
    }

    /// The home partition written in a reservation id.
    pub fn home_of(self, id: &ReservationId) -> Partition {
        Partition(id.home_hint() % self.count)
    }

    /// The partition keeping an idempotency record or an order id index.
    pub fn of_key(self, parts: &[&str]) -> Partition {
        let mut h = FNV_OFFSET;
        for p in parts {
            h = fnv1a_from(h, p.as_bytes());
            h = fnv1a_from(h, &[0]);
        }
        Partition((mix(h) % u64::from(self.count)) as u16)
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// MurmurHash3's 64-bit finalizer. The low bits of FNV-1a depend only on
/// the low bits of the input's bytes, so names that differ in a pattern
/// ("A-1", "B-2", ...) land in few partitions of a power-of-two count;
/// mixing spreads every bit of the hash over the low ones.
fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_from(FNV_OFFSET, bytes)
}

fn fnv1a_from(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_always_maps_to_the_same_partition() {
        let p = Partitions::new(16);
        let sku = Sku::parse("MUG-LOGO").unwrap();
        // Fixed forever: changing the hash would move stock between partitions.
        assert_eq!(fnv1a(b"MUG-LOGO"), 0x13d5_010f_3d50_8df8);
        assert_eq!(
            p.of_sku(&sku),
            Partition((mix(0x13d5_010f_3d50_8df8) % 16) as u16)
        );
        assert_eq!(Partitions::new(1).of_sku(&sku), Partition(0));
    }

    #[test]
    fn skus_spread_over_the_partitions() {
        let p = Partitions::new(16);
        let mut seen = [0usize; 16];
        for i in 0..16_000 {
            let sku = Sku::parse(&format!("SKU-{i}")).unwrap();
            seen[p.of_sku(&sku).0 as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn names_made_to_a_pattern_spread_too() {
        // "A-1", "B-2", ..., "Y-9": letter and digit share their low four
        // bits, which plain FNV-1a cancels out: it puts these 19 names in 4
        // of 16 partitions.
        let p = Partitions::new(16);
        let mut used = std::collections::BTreeSet::new();
        for c in b'A'..=b'Z' {
            for d in b'0'..=b'9' {
                if c & 15 == d & 15 {
                    let sku = Sku::parse(&format!("{}-{}", c as char, d as char)).unwrap();
                    used.insert(p.of_sku(&sku));
                }
            }
        }
        assert!(used.len() >= 10, "{used:?}");
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Partition::parse(&Partition(7).name()), Some(Partition(7)));
        assert_eq!(Partition::parse("q7"), None);
    }
}
