//! Reservations (holds): their ids, states and lines.

use super::Partition;
use super::{OrderId, Sku};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fmt;

/// A reservation id: `res_` and 32 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReservationId(String);

impl ReservationId {
    /// A fresh random id whose home partition is `home` (its last four hex
    /// digits).
    pub fn random(home: Partition) -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        ReservationId(format!("res_{}{:04x}", &hex[..28], home.0))
    }

    /// The id a request with an idempotency key always gets, so a retry after
    /// a lost answer finds the hold it already made instead of making another.
    /// The same key with the same basket gives the same home.
    pub fn for_idempotency_key(caller: &str, key: &str, home: Partition) -> Self {
        let digest = Sha256::new()
            .chain_update(caller)
            .chain_update([0])
            .chain_update(key)
            .finalize();
        ReservationId(format!("res_{}{:04x}", &hex::encode(digest)[..28], home.0))
    }

    /// The number written in the id's last four hex digits: its home
    /// partition, modulo the partition count.
    pub fn home_hint(&self) -> u16 {
        u16::from_str_radix(&self.0[self.0.len() - 4..], 16).unwrap_or(0)
    }

    /// Parses an id from a path; `None` if it cannot be one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("res_")?;
        let ok = hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| ReservationId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReservationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a reservation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    /// Units are held.
    Held,
    /// Turned into an order.
    Committed,
    /// Given back by the client.
    Released,
    /// Ran out of time; units given back.
    Expired,
}

impl HoldStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldStatus::Held => "held",
            HoldStatus::Committed => "committed",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }

    /// Parses the engine's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "held" => HoldStatus::Held,
            "committed" => HoldStatus::Committed,
            "released" => HoldStatus::Released,
            "expired" => HoldStatus::Expired,
            _ => return None,
        })
    }
}

/// One line of a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldLine {
    /// The SKU held.
    pub sku: Sku,
    /// Units held.
    pub qty: i64,
}

/// A reservation as stored by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Its id.
    pub id: ReservationId,
    /// Its state.
    pub status: HoldStatus,
    /// Who it is for, if said.
    pub customer_id: Option<String>,
    /// Which channel made it, if said.
    pub channel: Option<String>,
    /// Its lines, in the order first asked for.
    pub lines: Vec<HoldLine>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it runs out (or ran out).
    pub expires_at: DateTime<Utc>,
    /// The order it became, once committed.
    pub order_id: Option<OrderId>,
    /// When it was committed.
    pub committed_at: Option<DateTime<Utc>>,
    /// The payment reference given at commit.
    pub payment_ref: Option<String>,
}

/// A line that could not be held in full.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shortage {
    /// The SKU.
    pub sku: Sku,
    /// Units asked for.
    pub requested: i64,
    /// Units that were available.
    pub available: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_foreign_ids_are_refused() {
        let id = ReservationId::random(Partition(7));
        assert_eq!(ReservationId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.home_hint(), 7);
        assert_eq!(ReservationId::parse("res_123"), None);
        assert_eq!(
            ReservationId::parse("ord_0123456789abcdef0123456789abcdef"),
            None
        );
    }

    #[test]
    fn an_idempotency_key_always_gives_the_same_id_per_caller() {
        let a = ReservationId::for_idempotency_key("caller-1", "k", Partition(3));
        assert_eq!(
            a,
            ReservationId::for_idempotency_key("caller-1", "k", Partition(3))
        );
        assert_ne!(
            a,
            ReservationId::for_idempotency_key("caller-2", "k", Partition(3))
        );
        assert_eq!(a.home_hint(), 3);
        assert!(ReservationId::parse(a.as_str()).is_some());
    }
}
