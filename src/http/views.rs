//! Response bodies, as API.md shows them.

use crate::domain::{Hold, Order, Shortage, SkuView};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
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
    /// Units of on_hand no reservation may hold; left out (with
    /// `allocations` and `pools`) for a SKU with neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    safety_stock: Option<i64>,
    /// Each channel's allocation: its share of on_hand, which only a
    /// reservation of that channel may hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    allocations: Option<BTreeMap<String, i64>>,
    /// The SKU's counts per pool: `shared` (what any reservation may hold),
    /// each channel's allocation, and `safety`; they add up to on_hand and
    /// held, and `available` is theirs added up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pools: Option<Vec<PoolJson>>,
}

/// One pool of a SKU's stock.
#[derive(Serialize, ToSchema)]
pub struct PoolJson {
    /// `shared`, `safety` or the channel of an allocation.
    pool: String,
    /// Its share of on_hand.
    on_hand: i64,
    /// Units held from it.
    held: i64,
    /// What may still be held from it.
    available: i64,
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
            safety_stock: v.has_pools().then_some(v.safety_stock),
            allocations: v.has_pools().then(|| {
                v.allocations
                    .iter()
                    .map(|a| (a.channel.clone(), a.on_hand))
                    .collect()
            }),
            pools: v.has_pools().then(|| pools(v)),
        }
    }
}

fn pools(v: &SkuView) -> Vec<PoolJson> {
    let pool = |pool: &str, on_hand, held, available| PoolJson {
        pool: pool.to_owned(),
        on_hand,
        held,
        available,
    };
    let mut out = vec![pool(
        "shared",
        v.shared_on_hand(),
        v.shared_held(),
        v.shared_available(),
    )];
    out.extend(
        v.allocations
            .iter()
            .map(|a| pool(&a.channel, a.on_hand, a.held, a.available())),
    );
    if v.safety_stock > 0 {
        out.push(pool("safety", v.safety_stock, 0, 0));
    }
    out
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
