//! Orders: what a commit turns a hold into.

use super::{Hold, HoldLine, HoldStatus, ReservationId, Sku};
use chrono::{DateTime, Utc};
use std::fmt;

/// An order id: 1–128 printable characters, chosen by the client or generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderId(String);

impl OrderId {
    /// The id of the order a reservation becomes when the client names
    /// none: `ord_` and the reservation's hex digits. Always the same for a
    /// reservation, so a commit made again after Redis lost the first one
    /// (its last writes) is recognised as the same sale by the ledger.
    pub fn for_reservation(id: &ReservationId) -> Self {
        let hex = id.as_str().trim_start_matches("res_");
        OrderId(format!("ord_{hex}"))
    }

    /// Parses an order id, saying what is wrong with it if it is not one.
    pub fn parse(s: &str) -> Result<Self, String> {
        let len = s.chars().count();
        if len == 0 || len > 128 {
            return Err("must be 1 to 128 characters".into());
        }
        if s.chars().any(char::is_control) {
            return Err("may only contain printable characters".into());
        }
        Ok(OrderId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The SKU sold.
    pub sku: Sku,
    /// Units sold.
    pub qty: i64,
    /// Units returned since.
    pub returned_qty: i64,
}

/// A committed sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its id.
    pub order_id: OrderId,
    /// The reservation it came from.
    pub reservation_id: ReservationId,
    /// Who bought, if said.
    pub customer_id: Option<String>,
    /// Through which channel, if said.
    pub channel: Option<String>,
    /// The payment reference given at commit.
    pub payment_ref: Option<String>,
    /// What was sold.
    pub lines: Vec<OrderLine>,
    /// When the sale was made (Redis time).
    pub committed_at: DateTime<Utc>,
    /// Whether it is in Postgres yet.
    pub persisted: bool,
}

impl Order {
    /// The reservation as it ended, for when only the order is known (Redis
    /// lost the hold record, or it outlived its 25 h there). The hold's own
    /// times are not kept with the order: committed_at stands for both.
    pub fn as_committed_hold(&self) -> Hold {
        Hold {
            id: self.reservation_id.clone(),
            status: HoldStatus::Committed,
            customer_id: self.customer_id.clone(),
            channel: self.channel.clone(),
            lines: self
                .lines
                .iter()
                .map(|l| HoldLine {
                    sku: l.sku.clone(),
                    qty: l.qty,
                })
                .collect(),
            created_at: self.committed_at,
            expires_at: self.committed_at,
            order_id: Some(self.order_id.clone()),
            committed_at: Some(self.committed_at),
            payment_ref: self.payment_ref.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_printable_and_bounded() {
        assert!(OrderId::parse("ord-5521").is_ok());
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse(&"x".repeat(129)).is_err());
        assert!(OrderId::parse("a\tb").is_err());
        let id = ReservationId::random(crate::domain::Partition(0));
        let order = OrderId::for_reservation(&id);
        assert!(OrderId::parse(order.as_str()).is_ok());
        assert_eq!(order, OrderId::for_reservation(&id));
        assert_eq!(&order.as_str()[4..], &id.as_str()[4..]);
    }
}
