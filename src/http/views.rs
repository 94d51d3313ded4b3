//! Response bodies, as API.md shows them.

use crate::domain::{Hold, Order, Shortage, SkuView};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::schemas::{HoldStatusDoc, ShortageDoc};

/// RFC 3339 UTC with milliseconds: `2026-11-22T10:15:00.123Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A line of a reservation.
#[derive(Serialize, ToSchema)]
pub struct LineView {
    sku: String,
    qty: i64,
}

/// A reservation.
#[derive(Serialize, ToSchema)]
pub struct ReservationView {
    id: String,
    #[schema(value_type = HoldStatusDoc)]
    status: &'static str,
    customer_id: Option<String>,
    channel: Option<String>,
    lines: Vec<LineView>,
    #[schema(format = DateTime, example = "2026-11-22T10:15:00.123Z")]
    created_at: String,
    #[schema(format = DateTime, example = "2026-11-22T10:30:00.123Z")]
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<ShortageDoc>>)]
    shortages: Option<Vec<Shortage>>,
}

impl ReservationView {
    /// The view of `hold`; `shortages` only for partial holds.
    pub fn new(hold: &Hold, shortages: Option<Vec<Shortage>>) -> Self {
        ReservationView {
            id: hold.id.to_string(),
            status: hold.status.as_str(),
            customer_id: hold.customer_id.clone(),
            channel: hold.channel.clone(),
            lines: hold
                .lines
                .iter()
                .map(|l| LineView {
                    sku: l.sku.to_string(),
                    qty: l.qty,
                })
                .collect(),
            created_at: time(hold.created_at),
            expires_at: time(hold.expires_at),
            order_id: hold.order_id.as_ref().map(|o| o.to_string()),
            shortages,
        }
    }
}

/// A line of an order.
#[derive(Serialize, ToSchema)]
pub struct OrderLineView {
    sku: String,
    qty: i64,
    returned_qty: i64,
}

/// An order.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    order_id: String,
    reservation_id: String,
    customer_id: Option<String>,
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_ref: Option<String>,
    lines: Vec<OrderLineView>,
    #[schema(format = DateTime)]
    committed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    persisted: Option<bool>,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        OrderView {
            order_id: o.order_id.to_string(),
            reservation_id: o.reservation_id.to_string(),
            customer_id: o.customer_id.clone(),
            channel: o.channel.clone(),
            payment_ref: o.payment_ref.clone(),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLineView {
                    sku: l.sku.to_string(),
                    qty: l.qty,
                    returned_qty: l.returned_qty,
                })
                .collect(),
            committed_at: time(o.committed_at),
            // API.md: `persisted: false` marks a sale not yet in Postgres.
            persisted: (!o.persisted).then_some(false),
        }
    }
}

/// A SKU.
#[derive(Serialize, ToSchema)]
pub struct SkuJson {
    sku: String,
    on_hand: i64,
    held: i64,
    available: i64,
    backorder_limit: i64,
    per_customer_limit: Option<i64>,
    #[schema(format = DateTime)]
    sale_starts_at: Option<String>,
    /// Partitions the stock is spread over (hot-SKU buckets); left out for
    /// a SKU that is not spread.
    #[serde(skip_serializing_if = "not_spread")]
    #[schema(minimum = 2, maximum = 16)]
    buckets: Option<u16>,
}

impl From<&SkuView> for SkuJson {
    fn from(v: &SkuView) -> Self {
        SkuJson {
            sku: v.sku.to_string(),
            on_hand: v.on_hand,
            held: v.held,
            available: v.available(),
            backorder_limit: v.backorder_limit,
            per_customer_limit: v.per_customer_limit,
            sale_starts_at: v.sale_starts_at.map(time),
            buckets: Some(v.buckets),
        }
    }
}

fn not_spread(buckets: &Option<u16>) -> bool {
    buckets.is_none_or(|n| n <= 1)
}

/// Availability of one SKU.
#[derive(Serialize, ToSchema)]
pub struct AvailabilityItem {
    /// The SKU as asked.
    pub sku: String,
    /// Units that can be held now.
    pub available: i64,
    /// Whether any can.
    pub in_stock: bool,
}

/// `GET /v1/availability`.
#[derive(Serialize, ToSchema)]
pub struct AvailabilityView {
    /// In the order asked.
    pub items: Vec<AvailabilityItem>,
}
