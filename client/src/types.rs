//! The request and response bodies of API.md. Requests skip the members left
//! unset, because the service refuses unknown members and reads absent ones
//! as "use the default" or "keep what is there".

use crate::Error;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

// ---------------------------------------------------------------- SKUs

/// A SKU's live counts and settings (`GET /v1/skus/{sku}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuView {
    /// The SKU.
    pub sku: String,
    /// Units in the sellable pool not yet sold.
    pub on_hand: i64,
    /// Units in active reservations.
    pub held: i64,
    /// `on_hand - held + backorder_limit`, never below 0.
    pub available: i64,
    /// Units that may be held beyond `on_hand`.
    pub backorder_limit: i64,
    /// Most units one customer may hold plus buy, if limited.
    pub per_customer_limit: Option<i64>,
    /// When the SKU goes on sale, if not yet.
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// Partitions its stock is spread over (hot-SKU buckets), if spread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u16>,
    /// Units of `on_hand` no reservation may hold (with allocations or
    /// safety stock only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_stock: Option<i64>,
    /// Each channel's allocation: its share of `on_hand`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocations: Option<BTreeMap<String, i64>>,
    /// The counts per pool: `shared`, each channel's allocation, `safety`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<Vec<Pool>>,
}

/// One pool of a SKU's stock (`SkuView::pools`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// `shared`, `safety` or the channel of an allocation.
    pub pool: String,
    /// Its share of `on_hand`.
    pub on_hand: i64,
    /// Units held from it.
    pub held: i64,
    /// What may still be held from it.
    pub available: i64,
}

impl SkuView {
    /// The allocation of `channel`, if the SKU has one.
    pub fn pool(&self, channel: &str) -> Option<&Pool> {
        self.pools.as_ref()?.iter().find(|p| p.pool == channel)
    }
}

/// `PUT /v1/skus/{sku}`: create a SKU (`on_hand` required) or change it
/// (every member optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PutSku {
    /// New `on_hand`; the difference is recorded as an adjustment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<i64>,
    /// New backorder limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backorder_limit: Option<i64>,
    /// `None`: keep; `Some(None)`: remove the limit; `Some(Some(n))`: set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_customer_limit: Option<Option<i64>>,
    /// `None`: keep; `Some(None)`: on sale now; `Some(Some(t))`: on sale from `t`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sale_starts_at: Option<Option<DateTime<Utc>>>,
    /// Hot-SKU buckets: partitions to spread the stock over (1 = its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u16>,
    /// New safety stock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_stock: Option<i64>,
    /// New allocations: every channel's share (an empty map removes all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocations: Option<BTreeMap<String, i64>>,
}

impl PutSku {
    /// A new SKU with `on_hand` units and default settings.
    pub fn create(on_hand: i64) -> Self {
        PutSku {
            on_hand: Some(on_hand),
            ..PutSku::default()
        }
    }

    /// Sets the backorder limit.
    pub fn backorder_limit(mut self, limit: i64) -> Self {
        self.backorder_limit = Some(limit);
        self
    }

    /// Sets the per-customer limit.
    pub fn per_customer_limit(mut self, limit: i64) -> Self {
        self.per_customer_limit = Some(Some(limit));
        self
    }

    /// Spreads the stock over `n` partitions (hot-SKU buckets).
    pub fn buckets(mut self, n: u16) -> Self {
        self.buckets = Some(n);
        self
    }

    /// Keeps `units` of on_hand back from every channel.
    pub fn safety_stock(mut self, units: i64) -> Self {
        self.safety_stock = Some(units);
        self
    }

    /// Sets `channel`'s allocation to `units` (the others named so far
    /// kept; channels never named lose theirs).
    pub fn allocation(mut self, channel: impl Into<String>, units: i64) -> Self {
        self.allocations
            .get_or_insert_with(BTreeMap::new)
            .insert(channel.into(), units);
        self
    }

    /// Sets when the SKU goes on sale.
    pub fn sale_starts_at(mut self, at: DateTime<Utc>) -> Self {
        self.sale_starts_at = Some(Some(at));
        self
    }
}

/// `POST /v1/skus/{sku}/adjustments`: a relative change of `on_hand`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adjustment {
    /// The caller's id; a repeat with the same id changes nothing.
    pub adjustment_id: String,
    /// Units to add (negative: take away; never below `held`).
    pub delta: i64,
    /// Why: receipt, damage, count…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/availability`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// One item per SKU asked, in the order asked.
    pub items: Vec<AvailabilityItem>,
}

/// Availability of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailabilityItem {
    /// The SKU as asked.
    pub sku: String,
    /// Units that can be held now (0 for a SKU never set up).
    pub available: i64,
    /// Whether any can.
    pub in_stock: bool,
}

/// What a write answered: the body, and whether this call made the change
/// (`201`) or found it made by an earlier call with the same id (`200`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved<T> {
    /// `true` for `201`: created or applied by this call.
    pub created: bool,
    /// The response body.
    pub value: T,
}

// ---------------------------------------------------------------- reservations

/// A SKU and a quantity: a line of a reservation, a change or a return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// The SKU.
    pub sku: String,
    /// Units (0 only in a change, meaning remove the line).
    pub qty: i64,
}

impl Line {
    /// A line of `qty` units of `sku`.
    pub fn new(sku: impl Into<String>, qty: i64) -> Self {
        Line {
            sku: sku.into(),
            qty,
        }
    }
}

/// `POST /v1/reservations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReserveRequest {
    /// What to hold; lines naming the same SKU are summed.
    pub lines: Vec<Line>,
    /// How long to hold; the service's default (900 s) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Who the hold is for (required by SKUs with a per-customer limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Which channel asks (web, phone…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Hold what is available of short lines instead of refusing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_partial: bool,
}

impl ReserveRequest {
    /// A request to hold `lines` with the default TTL.
    pub fn new(lines: Vec<Line>) -> Self {
        ReserveRequest {
            lines,
            ..ReserveRequest::default()
        }
    }

    /// Sets the TTL in seconds.
    pub fn ttl_seconds(mut self, seconds: u64) -> Self {
        self.ttl_seconds = Some(seconds);
        self
    }

    /// Sets the customer.
    pub fn customer(mut self, customer_id: impl Into<String>) -> Self {
        self.customer_id = Some(customer_id.into());
        self
    }

    /// Sets the channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Holds what is available of short lines instead of refusing.
    pub fn allow_partial(mut self) -> Self {
        self.allow_partial = true;
        self
    }
}

/// `PATCH /v1/reservations/{id}`: new quantities for the named SKUs (0
/// removes a line; unnamed lines stay) and/or a TTL restarted from now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PatchReservation {
    /// Lines to set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<Line>,
    /// Restart the TTL with this many seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding stock.
    Held,
    /// Turned into an order.
    Committed,
    /// Released by a caller.
    Released,
    /// Ran out of time; its units went back.
    Expired,
    /// A status this client does not know (a newer service).
    #[serde(other)]
    Unknown,
}

impl ReservationStatus {
    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Held => "held",
            ReservationStatus::Committed => "committed",
            ReservationStatus::Released => "released",
            ReservationStatus::Expired => "expired",
            ReservationStatus::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reservation (a hold on a basket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// `res_…`.
    pub id: String,
    /// Where it stands.
    pub status: ReservationStatus,
    /// Who it is for.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Which channel made it.
    #[serde(default)]
    pub channel: Option<String>,
    /// What it holds (or held).
    pub lines: Vec<Line>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it runs out if not committed or released.
    pub expires_at: DateTime<Utc>,
    /// The order it became, once committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// Lines held at less than asked (only with `allow_partial`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shortages: Vec<Shortage>,
}

/// `POST /v1/reservations/{id}/commit`; both members optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CommitRequest {
    /// The order id to use; the service makes one when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The payment service's reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payment_ref: Option<String>,
}

/// What a commit answered: the three successful statuses, told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// `201`: sold now, and the order is in Postgres.
    Persisted(Order),
    /// `202`: sold now in Redis; Postgres was unreachable, so the order
    /// (`persisted: false`) reaches it once it is back.
    Pending(Order),
    /// `200`: committed by an earlier call; this is that order.
    AlreadyCommitted(Order),
}

impl CommitOutcome {
    /// Tells the outcome from the response status.
    pub fn from_status(status: u16, order: Order) -> Result<Self, Error> {
        match status {
            201 => Ok(CommitOutcome::Persisted(order)),
            202 => Ok(CommitOutcome::Pending(order)),
            200 => Ok(CommitOutcome::AlreadyCommitted(order)),
            _ => Err(Error::Unexpected {
                status,
                body: format!("a commit answers 200, 201 or 202, not {status}"),
            }),
        }
    }

    /// The order, however it was reached.
    pub fn order(&self) -> &Order {
        match self {
            CommitOutcome::Persisted(o)
            | CommitOutcome::Pending(o)
            | CommitOutcome::AlreadyCommitted(o) => o,
        }
    }

    /// The order, however it was reached.
    pub fn into_order(self) -> Order {
        match self {
            CommitOutcome::Persisted(o)
            | CommitOutcome::Pending(o)
            | CommitOutcome::AlreadyCommitted(o) => o,
        }
    }
}

// ---------------------------------------------------------------- orders

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The SKU.
    pub sku: String,
    /// Units sold.
    pub qty: i64,
    /// Units returned so far.
    #[serde(default)]
    pub returned_qty: i64,
}

/// An order: a committed reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order id.
    pub order_id: String,
    /// The reservation it came from.
    pub reservation_id: String,
    /// Who bought.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Which channel sold.
    #[serde(default)]
    pub channel: Option<String>,
    /// The payment reference given at commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_ref: Option<String>,
    /// What was sold.
    pub lines: Vec<OrderLine>,
    /// When.
    pub committed_at: DateTime<Utc>,
    /// `Some(false)` while the sale is not yet in Postgres; absent once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persisted: Option<bool>,
}

impl Order {
    /// Whether the order is in Postgres.
    pub fn is_persisted(&self) -> bool {
        self.persisted.unwrap_or(true)
    }
}

/// `POST /v1/orders/{order_id}/returns`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReturnRequest {
    /// The caller's id; a repeat with the same id changes nothing.
    pub return_id: String,
    /// Units returned per SKU.
    pub lines: Vec<Line>,
    /// Put the units back on sale.
    pub restock: bool,
}

// ---------------------------------------------------------------- administration

/// What kind of change a ledger row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerKind {
    /// The SKU was set up.
    Created,
    /// `on_hand` was set or adjusted.
    Adjustment,
    /// Units were sold.
    Commit,
    /// Units were returned.
    Return,
    /// Reconcile repaired the live counts.
    Repair,
    /// A kind this client does not know (a newer service).
    #[serde(other)]
    Unknown,
}

/// A row of a SKU's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The row's id.
    pub id: String,
    /// When.
    pub at: DateTime<Utc>,
    /// What kind of change.
    pub kind: LedgerKind,
    /// The change of `on_hand`.
    pub delta: i64,
    /// `on_hand` after it.
    pub on_hand_after: i64,
    /// The order, adjustment or return it came from.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
}

/// A page of a SKU's ledger, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerPage {
    /// The rows.
    pub items: Vec<LedgerEntry>,
    /// The cursor for the next (older) page; `None` on the last.
    #[serde(default)]
    pub next: Option<String>,
}

/// `POST /v1/admin/reconcile`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileRequest {
    /// Set drifted counts to the expected values.
    pub repair: bool,
    /// Only these SKUs (all when `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
}

/// A SKU's counts as reconcile compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Units on hand.
    pub on_hand: i64,
    /// Units held.
    pub held: i64,
}

/// A SKU whose live counts differ from what the ledger says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The SKU.
    pub sku: String,
    /// What the ledger and live holds say.
    pub expected: Counts,
    /// What Redis had.
    pub actual: Counts,
}

/// What reconcile found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// SKUs compared.
    pub checked: u64,
    /// Those that drifted.
    pub drifted: Vec<Drift>,
    /// Whether they were repaired.
    pub repaired: bool,
    /// How long it took.
    pub duration_ms: u64,
}

/// What `/readyz` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// `true` for `200`.
    pub ready: bool,
    /// Why not, for `503`.
    pub reasons: Vec<String>,
}

// ---------------------------------------------------------------- error members

/// A field-level problem of a `422 validation_failed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON path of the field, e.g. `lines[3].qty`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A line that could not be held in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortage {
    /// The SKU.
    pub sku: String,
    /// Units asked for.
    pub requested: i64,
    /// Units available.
    pub available: i64,
}

/// A line over its SKU's per-customer limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitBreach {
    /// The SKU.
    pub sku: String,
    /// Its per-customer limit.
    pub limit: i64,
    /// Units the customer holds or bought already.
    pub already: i64,
    /// Units asked for now.
    pub requested: i64,
}

/// A SKU not on sale yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleStart {
    /// The SKU.
    pub sku: String,
    /// When it goes on sale.
    pub starts_at: DateTime<Utc>,
}

/// A return line over what is returnable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnExcess {
    /// The SKU.
    pub sku: String,
    /// Units committed and not yet returned.
    pub returnable: i64,
    /// Units asked to return.
    pub requested: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, to_value};

    #[test]
    fn requests_leave_unset_members_out() {
        assert_eq!(
            to_value(ReserveRequest::new(vec![Line::new("A", 2)])).unwrap(),
            json!({ "lines": [ { "sku": "A", "qty": 2 } ] })
        );
        assert_eq!(
            to_value(
                ReserveRequest::new(vec![Line::new("A", 1)])
                    .ttl_seconds(7200)
                    .customer("c-1")
                    .channel("phone")
                    .allow_partial()
            )
            .unwrap(),
            json!({ "lines": [ { "sku": "A", "qty": 1 } ], "ttl_seconds": 7200,
                    "customer_id": "c-1", "channel": "phone", "allow_partial": true })
        );
        assert_eq!(
            to_value(PatchReservation {
                ttl_seconds: Some(60),
                ..Default::default()
            })
            .unwrap(),
            json!({ "ttl_seconds": 60 })
        );
        assert_eq!(to_value(CommitRequest::default()).unwrap(), json!({}));
    }

    #[test]
    fn put_sku_tells_keep_clear_and_set_apart() {
        assert_eq!(to_value(PutSku::default()).unwrap(), json!({}));
        assert_eq!(
            to_value(PutSku::create(5).per_customer_limit(2)).unwrap(),
            json!({ "on_hand": 5, "per_customer_limit": 2 })
        );
        let clear = PutSku {
            per_customer_limit: Some(None),
            sale_starts_at: Some(None),
            ..PutSku::default()
        };
        assert_eq!(
            to_value(clear).unwrap(),
            json!({ "per_customer_limit": null, "sale_starts_at": null })
        );
    }

    #[test]
    fn a_reservation_parses_with_and_without_optional_members() {
        let held: Reservation = serde_json::from_value(json!({
            "id": "res_1", "status": "held", "customer_id": null, "channel": "web",
            "lines": [ { "sku": "A", "qty": 2 } ],
            "created_at": "2026-11-22T10:15:00.123Z", "expires_at": "2026-11-22T10:30:00.123Z",
            "shortages": [ { "sku": "B", "requested": 3, "available": 1 } ]
        }))
        .unwrap();
        assert_eq!(held.status, ReservationStatus::Held);
        assert_eq!(held.customer_id, None);
        assert_eq!(held.shortages[0].available, 1);
        assert_eq!((held.expires_at - held.created_at).num_seconds(), 900);

        let committed: Reservation = serde_json::from_value(json!({
            "id": "res_1", "status": "committed", "lines": [],
            "created_at": "2026-11-22T10:15:00Z", "expires_at": "2026-11-22T10:30:00Z",
            "order_id": "ord-1"
        }))
        .unwrap();
        assert_eq!(committed.order_id.as_deref(), Some("ord-1"));
        assert!(committed.shortages.is_empty());
    }

    #[test]
    fn unknown_statuses_and_kinds_do_not_break_parsing() {
        let status: ReservationStatus = serde_json::from_value(json!("frozen")).unwrap();
        assert_eq!(status, ReservationStatus::Unknown);
        let kind: LedgerKind = serde_json::from_value(json!("transfer")).unwrap();
        assert_eq!(kind, LedgerKind::Unknown);
    }

    #[test]
    fn an_order_is_persisted_unless_it_says_otherwise() {
        let body = json!({
            "order_id": "ord-1", "reservation_id": "res_1", "customer_id": "c", "channel": null,
            "lines": [ { "sku": "A", "qty": 2, "returned_qty": 1 } ],
            "committed_at": "2026-11-22T10:15:00.123Z"
        });
        let order: Order = serde_json::from_value(body.clone()).unwrap();
        assert!(order.is_persisted());
        assert_eq!(order.lines[0].returned_qty, 1);

        let mut pending = body;
        pending["persisted"] = json!(false);
        let order: Order = serde_json::from_value(pending).unwrap();
        assert!(!order.is_persisted());
    }

    #[test]
    fn commit_statuses_map_to_outcomes() {
        let order: Order = serde_json::from_value(json!({
            "order_id": "ord-1", "reservation_id": "res_1", "lines": [],
            "committed_at": "2026-11-22T10:15:00Z"
        }))
        .unwrap();
        let outcome = |s| CommitOutcome::from_status(s, order.clone());
        assert!(matches!(outcome(201), Ok(CommitOutcome::Persisted(_))));
        assert!(matches!(outcome(202), Ok(CommitOutcome::Pending(_))));
        assert!(matches!(
            outcome(200),
            Ok(CommitOutcome::AlreadyCommitted(_))
        ));
        assert!(matches!(
            outcome(204),
            Err(Error::Unexpected { status: 204, .. })
        ));
        assert_eq!(outcome(202).unwrap().into_order(), order);
    }

    #[test]
    fn ledger_rows_and_reconcile_reports_parse() {
        let page: LedgerPage = serde_json::from_value(json!({
            "items": [ { "id": "42", "at": "2026-11-22T10:15:00.123Z", "kind": "commit",
                         "delta": -2, "on_hand_after": 8, "ref": "ord-1" } ],
            "next": null
        }))
        .unwrap();
        assert_eq!(page.items[0].kind, LedgerKind::Commit);
        assert_eq!(page.items[0].reference.as_deref(), Some("ord-1"));
        assert_eq!(page.next, None);

        let report: ReconcileReport = serde_json::from_value(json!({
            "checked": 10, "repaired": false, "duration_ms": 41,
            "drifted": [ { "sku": "A", "expected": { "on_hand": 5, "held": 2 },
                           "actual": { "on_hand": 6, "held": 2 } } ]
        }))
        .unwrap();
        assert_eq!(report.drifted[0].actual.on_hand, 6);
    }
}
