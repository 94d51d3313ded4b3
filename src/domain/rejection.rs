//! Why the stock rules refused an operation. Every rejection leaves nothing
//! changed; the HTTP layer turns each into its problem+json answer.

use super::{Shortage, Sku};
use chrono::{DateTime, Utc};

/// A SKU whose per-customer limit a request would break.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LimitBreach {
    /// The SKU.
    pub sku: Sku,
    /// Its per-customer limit.
    pub limit: i64,
    /// Units the customer holds or bought already.
    pub already: i64,
    /// Units asked for now.
    pub requested: i64,
}

/// A return line asking for more than may be returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReturnExcess {
    /// The SKU.
    pub sku: Sku,
    /// Committed minus returned so far.
    pub returnable: i64,
    /// Units asked to return.
    pub requested: i64,
}

/// A pool of a SKU (`shared`, or a channel's allocation) that a change of
/// the allocations or the safety stock would leave below its holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PoolShort {
    /// `shared` or the channel.
    pub pool: String,
    /// The pool's share of on_hand the change asks for.
    pub on_hand: i64,
    /// Units held from it now.
    pub held: i64,
}

/// An operation the stock rules refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No such reservation.
    #[error("reservation not found")]
    NotFound,
    /// The reservation ran out of time.
    #[error("reservation expired")]
    Expired,
    /// The reservation was released.
    #[error("reservation released")]
    Released,
    /// The reservation was committed.
    #[error("reservation committed")]
    Committed,
    /// Redis lost the reservation (or a part of it) with the last writes of
    /// a partition that restarted or failed over; its units went back.
    #[error("reservation lost")]
    Lost,
    /// The reservation has no lines left to commit.
    #[error("reservation has no lines")]
    Empty,
    /// The order id belongs to another reservation's order.
    #[error("order id already used")]
    OrderTaken,
    /// SKUs never set up.
    #[error("unknown SKUs")]
    UnknownSku(Vec<Sku>),
    /// SKUs with a per-customer limit named without a customer id.
    #[error("customer id required")]
    CustomerRequired(Vec<Sku>),
    /// SKUs whose sale has not started.
    #[error("sale not started")]
    SaleNotStarted(Vec<(Sku, DateTime<Utc>)>),
    /// Per-customer limits that would be exceeded.
    #[error("per-customer limit exceeded")]
    LimitExceeded(Vec<LimitBreach>),
    /// Lines that cannot be held in full.
    #[error("insufficient stock")]
    Insufficient(Vec<Shortage>),
    /// A SKU change that would leave `available` below zero.
    #[error("stock below what holds need")]
    BelowHeld {
        /// The SKU.
        sku: Sku,
        /// `on_hand + backorder_limit` asked for.
        requested: i64,
        /// Units held.
        held: i64,
    },
    /// A change of allocations or safety stock that would leave pools
    /// with fewer units than their holds took.
    #[error("pool below what is held from it")]
    PoolBelowHeld(Vec<PoolShort>),
    /// No such SKU.
    #[error("SKU not found")]
    SkuNotFound,
    /// No such order.
    #[error("order not found")]
    OrderNotFound,
    /// An adjustment or return id already used for a different change.
    #[error("id already used for a different change")]
    IdReused,
    /// Return lines beyond what was committed minus what was returned.
    #[error("return exceeds the order")]
    ReturnExceedsOrder(Vec<ReturnExcess>),
    /// A new SKU needs `on_hand`.
    #[error("on_hand required")]
    OnHandRequired,
    /// A setting that cannot be taken as the SKU stands.
    #[error("setting refused")]
    BadSetting {
        /// The field.
        field: &'static str,
        /// Why, in words.
        message: &'static str,
    },
}
