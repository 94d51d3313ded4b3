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
    /// The low-stock threshold: a `sku.low_stock` event when what is
    /// available (to any reservation) drops to it or below; left out for
    /// none.
    #[serde(skip_serializing_if = "Option::is_none")]
    low_stock: Option<i64>,
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
            low_stock: v.low_stock,
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

/// A line of a hold event.
#[derive(Serialize, ToSchema)]
pub struct EventLineView {
    sku: String,
    qty: i64,
    /// What is available of the SKU right after (its shared pool's, as
    /// `GET /v1/availability?sku=` answers; absent for a SKU spread over
    /// buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<i64>,
}

/// A stock event (the `data` of an SSE message).
#[derive(Serialize, ToSchema)]
pub struct EventView {
    /// Unique and stable: `<partition>-<stream id>`.
    #[schema(example = "p0-1796417951184-0")]
    id: String,
    #[serde(rename = "type")]
    #[schema(example = "hold.created")]
    kind: &'static str,
    #[schema(format = DateTime, example = "2026-12-04T21:39:11.184Z")]
    time: String,
    /// The SKUs it is about.
    skus: Vec<String>,
    // hold.*
    #[serde(skip_serializing_if = "Option::is_none")]
    reservation_id: Option<String>,
    /// The part of a basket over several partitions kept in one (whose own
    /// event lists that part's lines); false for the basket's own record.
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<Vec<EventLineView>>,
    // sku.* and drift.*
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    available: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_hand: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    low_stock: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<i64>,
    /// `sku.adjusted`: `adjustment`, `return`, `set` (PUT) or `created`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// `sku.adjusted`: the adjustment's or return's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    // drift.*
    /// The channel whose allocation drifted (absent: the SKU's own counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_on_hand: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_held: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    held: Option<i64>,
}

fn ms_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(time)
        .unwrap_or_default()
}

impl From<&crate::domain::Event> for EventView {
    fn from(e: &crate::domain::Event) -> Self {
        use crate::domain::EventBody;
        let mut v = EventView {
            id: e.id(),
            kind: e.kind.as_str(),
            time: ms_time(e.at_ms),
            skus: e.skus().into_iter().map(str::to_owned).collect(),
            reservation_id: None,
            part: None,
            customer_id: None,
            channel: None,
            expires_at: None,
            order_id: None,
            lines: None,
            sku: None,
            available: None,
            on_hand: None,
            low_stock: None,
            delta: None,
            reason: None,
            reference: None,
            note: None,
            pool: None,
            expected_on_hand: None,
            expected_held: None,
            held: None,
        };
        match &e.body {
            EventBody::Hold {
                reservation_id,
                part,
                customer_id,
                channel,
                expires_at_ms,
                order_id,
                lines,
            } => {
                v.reservation_id = Some(reservation_id.clone());
                v.part = Some(*part);
                v.customer_id = customer_id.clone();
                v.channel = channel.clone();
                v.expires_at = expires_at_ms.map(ms_time);
                v.order_id = order_id.clone();
                v.lines = Some(
                    lines
                        .iter()
                        .map(|l| EventLineView {
                            sku: l.sku.clone(),
                            qty: l.quantity,
                            available: l.available,
                        })
                        .collect(),
                );
            }
            EventBody::Sku {
                sku,
                available,
                on_hand,
                low_stock,
                delta,
                reason,
                reference,
                note,
            } => {
                v.sku = Some(sku.clone());
                v.available = *available;
                v.on_hand = *on_hand;
                v.low_stock = *low_stock;
                v.delta = *delta;
                v.reason = reason.clone();
                v.reference = reference.clone();
                v.note = note.clone();
            }
            EventBody::Drift {
                sku,
                pool,
                expected_on_hand,
                expected_held,
                on_hand,
                held,
            } => {
                v.sku = Some(sku.clone());
                v.pool = pool.clone();
                v.expected_on_hand = Some(*expected_on_hand);
                v.expected_held = Some(*expected_held);
                v.on_hand = *on_hand;
                v.held = Some(*held);
            }
        }
        v
    }
}

/// Commits answered `202` in one minute.
#[derive(Serialize, ToSchema)]
pub struct MinuteCount {
    /// The minute's start.
    #[schema(format = DateTime, example = "2026-11-22T10:15:00.000Z")]
    pub minute: String,
    /// Commits answered `202` in it.
    pub count: i64,
}

/// `GET /v1/admin/overview`: the figures of the admin console's overview.
#[derive(Serialize, ToSchema)]
pub struct OverviewView {
    /// SKUs set up (from Postgres; null while it cannot be reached).
    pub skus: Option<i64>,
    /// Live hold records in Redis: holds and commits under way (a basket
    /// holding stock in several partitions counts once per partition).
    pub live_holds: u64,
    /// Age in ms of the oldest outbox entry not yet in Postgres (0: every
    /// change is persisted; null while Postgres cannot be reached). Entries
    /// a commit wrote to Postgres itself do not count, so this is the delay
    /// of changes answered `202` or made while Postgres was slow.
    pub outbox_lag_ms: Option<i64>,
    /// Commits answered `202` (sold, not yet in Postgres) per minute, the
    /// last 120 minutes, oldest first; minutes without any left out.
    pub not_persisted_per_minute: Vec<MinuteCount>,
    /// Redis partitions of the live state.
    pub partitions: u16,
    /// When the figures were read.
    #[schema(format = DateTime, example = "2026-11-22T10:15:00.123Z")]
    pub at: String,
}

/// A live hold on a SKU.
#[derive(Serialize, ToSchema)]
pub struct HoldOnSkuView {
    /// The reservation.
    pub id: String,
    /// Its units of this SKU.
    pub qty: i64,
    /// `held`, or `committing` while a commit is under way.
    #[schema(value_type = String, example = "held")]
    pub status: &'static str,
    /// The customer it was made for, if named.
    pub customer_id: Option<String>,
    /// The channel it was made on, if named.
    pub channel: Option<String>,
    /// When it was made.
    #[schema(format = DateTime, example = "2026-11-22T10:15:00.123Z")]
    pub created_at: String,
    /// When it expires unless committed, released or extended.
    #[schema(format = DateTime, example = "2026-11-22T10:30:00.123Z")]
    pub expires_at: String,
}

impl From<&crate::engine::HoldOnSku> for HoldOnSkuView {
    fn from(h: &crate::engine::HoldOnSku) -> Self {
        let at = |ms| time(DateTime::from_timestamp_millis(ms).unwrap_or_default());
        HoldOnSkuView {
            id: h.id.to_string(),
            qty: h.qty,
            status: h.status.as_str(),
            customer_id: h.customer_id.clone(),
            channel: h.channel.clone(),
            created_at: at(h.created_ms),
            expires_at: at(h.expires_ms),
        }
    }
}

/// `GET /v1/skus/{sku}/holds`: the live holds on a SKU.
#[derive(Serialize, ToSchema)]
pub struct HoldsOnSkuView {
    /// Soonest to expire first, at most `limit`.
    pub items: Vec<HoldOnSkuView>,
    /// Live holds found on the SKU (`items` are the first `limit` of them).
    pub total: usize,
    /// Live hold records read to find them: in each of the SKU's
    /// partitions, commits under way and then those soonest to expire, at
    /// most `limits.holds_scan` (20 000 by default).
    pub scanned: usize,
    /// False when a partition of the SKU had more live hold records than
    /// were read: the holds found are the soonest to expire, and later ones
    /// are not counted in `total`.
    pub complete: bool,
}
