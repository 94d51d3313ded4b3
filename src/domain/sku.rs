//! SKU identifiers and the live view of one SKU's stock.

use chrono::{DateTime, Utc};
use std::fmt;

/// Largest quantity a single line may ask for.
pub const MAX_QTY: i64 = 1_000_000;

/// A stock-keeping unit id: 1–64 characters of `A-Z a-z 0-9 . _ : -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    /// Parses a SKU, saying what is wrong with it if it is not one.
    pub fn parse(s: &str) -> Result<Sku, String> {
        if s.is_empty() || s.len() > 64 {
            return Err("must be 1 to 64 characters".into());
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if !s.chars().all(allowed) {
            return Err("may only contain A-Z a-z 0-9 . _ : -".into());
        }
        Ok(Sku(s.to_owned()))
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One SKU's live counts and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuView {
    /// The SKU.
    pub sku: Sku,
    /// Units in the sellable pool not yet sold.
    pub on_hand: i64,
    /// Units in active holds.
    pub held: i64,
    /// Units that may be sold beyond `on_hand`.
    pub backorder_limit: i64,
    /// Most units one customer may hold plus buy, if limited.
    pub per_customer_limit: Option<i64>,
    /// When the SKU may first be held, if in the future.
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// Partitions its stock is spread over (hot-SKU buckets; 1 = none).
    pub buckets: u16,
    /// Units no reservation may hold (part of `on_hand`).
    pub safety_stock: i64,
    /// The channels' allocations: units of `on_hand` only a reservation of
    /// that channel may hold.
    pub allocations: Vec<Allocation>,
    /// Its low-stock threshold: `sku.low_stock` when available drops to it.
    pub low_stock: Option<i64>,
}

/// One channel's allocation of a SKU: its share of `on_hand`, the units
/// held from it and what is left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The channel.
    pub channel: String,
    /// Its share of `on_hand`.
    pub on_hand: i64,
    /// Units held from it.
    pub held: i64,
}

impl Allocation {
    /// What a reservation of the channel may still hold of it.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.held).max(0)
    }
}

impl SkuView {
    /// What every channel together may still hold: the shared pool's
    /// available units and each allocation's (`on_hand − held +
    /// backorder_limit` less the safety stock), never below 0.
    pub fn available(&self) -> i64 {
        self.shared_available()
            + self
                .allocations
                .iter()
                .map(Allocation::available)
                .sum::<i64>()
    }

    /// The shared pool's share of `on_hand`: what neither the allocations
    /// nor the safety stock keep.
    pub fn shared_on_hand(&self) -> i64 {
        self.on_hand - self.safety_stock - self.allocations.iter().map(|a| a.on_hand).sum::<i64>()
    }

    /// Units held from the shared pool.
    pub fn shared_held(&self) -> i64 {
        self.held - self.allocations.iter().map(|a| a.held).sum::<i64>()
    }

    /// What a reservation without an allocation may hold.
    pub fn shared_available(&self) -> i64 {
        (self.shared_on_hand() - self.shared_held() + self.backorder_limit).max(0)
    }

    /// Whether it has an allocation or safety stock.
    pub fn has_pools(&self) -> bool {
        self.safety_stock > 0 || !self.allocations.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_allowed_character() {
        assert!(Sku::parse("Az09._:-").is_ok());
        assert!(Sku::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_foreign_characters() {
        for bad in ["", &"a".repeat(65), "a b", "a/b", "é", "a{p0}", "a\n"] {
            assert!(Sku::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn available_never_drops_below_zero() {
        let view = SkuView {
            sku: Sku::parse("A").unwrap(),
            on_hand: 1,
            held: 3,
            backorder_limit: 1,
            per_customer_limit: None,
            sale_starts_at: None,
            buckets: 1,
            safety_stock: 0,
            allocations: Vec::new(),
            low_stock: None,
        };
        assert_eq!(view.available(), 0);
    }

    #[test]
    fn pools_add_up_to_the_totals() {
        let view = SkuView {
            sku: Sku::parse("A").unwrap(),
            on_hand: 100,
            held: 30,
            backorder_limit: 0,
            per_customer_limit: None,
            sale_starts_at: None,
            buckets: 1,
            safety_stock: 5,
            allocations: vec![Allocation {
                channel: "callcentre".into(),
                on_hand: 20,
                held: 8,
            }],
            low_stock: None,
        };
        assert_eq!(view.shared_on_hand(), 75);
        assert_eq!(view.shared_held(), 22);
        assert_eq!(view.shared_available(), 53);
        assert_eq!(view.available(), 53 + 12);
    }
}
