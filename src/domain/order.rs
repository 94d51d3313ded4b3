//! Orders: what a commit turns a hold into.

use super::{ReservationId, Sku};
use chrono::{DateTime, Utc};
use std::fmt;

/// An order id: 1–128 printable characters, chosen by the client or generated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderId(String);

impl OrderId {
    /// A fresh generated id, `ord_` and a time-ordered UUID.
    pub fn generate() -> Self {
        OrderId(format!("ord_{}", uuid::Uuid::now_v7().simple()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_printable_and_bounded() {
        assert!(OrderId::parse("ord-5521").is_ok());
        assert!(OrderId::parse("").is_err());
        assert!(OrderId::parse(&"x".repeat(129)).is_err());
        assert!(OrderId::parse("a\tb").is_err());
        assert!(OrderId::parse(OrderId::generate().as_str()).is_ok());
    }
}
