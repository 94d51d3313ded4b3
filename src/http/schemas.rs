//! Schemas of the OpenAPI document for what handlers parse by hand (request
//! bodies are walked field by field so every problem can be listed) or
//! build by hand (problems, ledger pages, reconcile reports). They describe
//! the wire format; the parsing lives in `domain::requests`.
#![allow(dead_code)]

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A reservation's status.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HoldStatusDoc {
    /// Units are held.
    Held,
    /// Turned into an order.
    Committed,
    /// Given back by the client.
    Released,
    /// Ran out of time.
    Expired,
}

/// A basket line.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineBody {
    /// 1–64 characters of `A-Z a-z 0-9 . _ : -`.
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$", example = "TSHIRT-RED-M")]
    sku: String,
    /// Units; lines naming the same SKU are summed.
    #[schema(minimum = 1, maximum = 1_000_000)]
    qty: i64,
}

/// A line of a reservation change; 0 removes the line.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchLineBody {
    #[schema(pattern = r"^[A-Za-z0-9._:-]{1,64}$")]
    sku: String,
    #[schema(minimum = 0, maximum = 1_000_000)]
    qty: i64,
}

/// `POST /v1/reservations`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReserveBody {
    /// 1 to 500 lines (configurable).
    #[schema(min_items = 1, max_items = 500)]
    lines: Vec<LineBody>,
    /// 1 to the role's ceiling (storefront 3 600, callcentre and admin 86 400); default 900.
    #[schema(minimum = 1, maximum = 86_400)]
    #[serde(default)]
    ttl_seconds: Option<i64>,
    /// Required for SKUs with a per-customer limit.
    #[schema(min_length = 1, max_length = 128)]
    #[serde(default)]
    customer_id: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    #[serde(default)]
    channel: Option<String>,
    /// Hold what is available of short lines instead of refusing the basket.
    #[serde(default)]
    allow_partial: Option<bool>,
}

/// `PATCH /v1/reservations/{id}`: at least one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct PatchBody {
    #[schema(max_items = 500)]
    #[serde(default)]
    lines: Option<Vec<PatchLineBody>>,
    /// Restarts the TTL from now.
    #[schema(minimum = 1, maximum = 86_400)]
    #[serde(default)]
    ttl_seconds: Option<i64>,
}

/// `POST /v1/reservations/{id}/commit`; the body may be empty.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitBody {
    /// Generated (`ord_…`) when absent; unique across orders.
    #[schema(min_length = 1, max_length = 128)]
    #[serde(default)]
    order_id: Option<String>,
    #[schema(min_length = 1, max_length = 128)]
    #[serde(default)]
    payment_ref: Option<String>,
}

/// `PUT /v1/skus/{sku}`: `on_hand` required on create; `null` clears a limit or sale start.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSkuBody {
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default)]
    on_hand: Option<i64>,
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default)]
    backorder_limit: Option<i64>,
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(default)]
    per_customer_limit: Option<i64>,
    #[schema(format = DateTime)]
    #[serde(default)]
    sale_starts_at: Option<String>,
    /// Hot-SKU buckets: partitions the stock is spread over (1..=16, at
    /// most the partition count; no backorder limit; may change only while
    /// the SKU has no per-customer limit).
    #[schema(minimum = 1, maximum = 16)]
    #[serde(default)]
    buckets: Option<i64>,
    /// Units of on_hand no reservation may hold (taken from the shared
    /// pool; never below what its holds took: else 409 pool_below_held).
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default)]
    safety_stock: Option<i64>,
    /// The low-stock threshold: a `sku.low_stock` event when what is
    /// available (to any reservation; the shared pool's with allocations)
    /// drops to it or below; `null` removes it. Not on a SKU spread over
    /// buckets.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    #[serde(default)]
    low_stock: Option<i64>,
    /// Each channel's allocation: its share of on_hand, which only a
    /// reservation naming that `channel` may hold (it takes from it first,
    /// then from the shared pool). Every channel's share: channels left
    /// out lose theirs; `null` or `{}` removes all. A share never drops
    /// below what is held from it (409 pool_below_held). Not on a SKU
    /// spread over buckets.
    #[serde(default)]
    #[schema(schema_with = allocations_schema)]
    allocations: Option<std::collections::HashMap<String, i64>>,
}

/// `allocations`: channel names like SKUs (other than `shared` and
/// `safety`, the view's pool names), shares of 0 to 10^12, at most 32.
fn allocations_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[A-Za-z0-9._:-]{1,64}$")),
        ))
        .additional_properties(Some(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(1_000_000_000_000_i64)),
        ))
        .max_properties(Some(32))
        .examples([serde_json::json!({ "callcentre": 20 })])
        .build()
}

/// `POST /v1/skus/{sku}/adjustments`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustmentBody {
    #[schema(min_length = 1, max_length = 128)]
    adjustment_id: String,
    /// Non-zero; `on_hand` may not drop below `held`.
    #[schema(minimum = -1_000_000_000_000_i64, maximum = 1_000_000_000_000_i64)]
    delta: i64,
    #[schema(min_length = 1, max_length = 128)]
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /v1/orders/{order_id}/returns`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBody {
    #[schema(min_length = 1, max_length = 128)]
    return_id: String,
    #[schema(min_items = 1, max_items = 500)]
    lines: Vec<LineBody>,
    /// Put the units back into `on_hand` (default false).
    #[serde(default)]
    restock: Option<bool>,
}

/// `POST /v1/admin/reconcile`; the body may be empty.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileBody {
    /// Set drifted counts to the expected values.
    #[serde(default)]
    repair: Option<bool>,
    /// Only these SKUs (all when absent).
    #[schema(max_items = 10_000)]
    #[serde(default)]
    skus: Option<Vec<String>>,
}

/// A line that could not be held in full.
#[derive(Serialize, ToSchema)]
pub struct ShortageDoc {
    sku: String,
    requested: i64,
    available: i64,
}

/// A pool a change of allocations or safety stock would leave below what
/// its holds took (409 `pool_below_held`).
#[derive(Serialize, ToSchema)]
pub struct PoolShortDoc {
    /// `shared` or the channel.
    pool: String,
    /// The share the change asks for.
    on_hand: i64,
    /// Units held from it now.
    held: i64,
}

/// One problem with one field.
#[derive(Serialize, ToSchema)]
pub struct FieldErrorDoc {
    /// JSON path, e.g. `lines[3].qty`.
    field: String,
    message: String,
}

/// A per-customer limit a request would break.
#[derive(Serialize, ToSchema)]
pub struct LimitDoc {
    sku: String,
    limit: i64,
    already: i64,
    requested: i64,
}

/// A return line beyond what may be returned.
#[derive(Serialize, ToSchema)]
pub struct ReturnExcessDoc {
    sku: String,
    returnable: i64,
    requested: i64,
}

/// An RFC 9457 problem. `code` is the stable key; the extra members depend
/// on it: `errors` (validation_failed), `skus` (unknown_sku: SKU strings;
/// sale_not_started: `{sku, starts_at}`), `shortages` (insufficient_stock),
/// `limits` (per_customer_limit_exceeded), `lines` (return_exceeds_order),
/// `reasons` (readiness).
#[derive(Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "/problems/insufficient-stock")]
    kind: String,
    title: String,
    status: u16,
    #[schema(example = "insufficient_stock")]
    code: String,
    detail: String,
    #[serde(default)]
    errors: Option<Vec<FieldErrorDoc>>,
    #[serde(default)]
    skus: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    shortages: Option<Vec<ShortageDoc>>,
    #[serde(default)]
    limits: Option<Vec<LimitDoc>>,
    #[serde(default)]
    lines: Option<Vec<ReturnExcessDoc>>,
    #[serde(default)]
    pools: Option<Vec<PoolShortDoc>>,
    #[serde(default)]
    reasons: Option<Vec<String>>,
}

/// One row of a SKU's ledger.
#[derive(Serialize, ToSchema)]
pub struct LedgerItem {
    /// Also the paging cursor.
    id: String,
    #[schema(format = DateTime)]
    at: String,
    #[schema(example = "commit")]
    kind: String,
    delta: i64,
    on_hand_after: i64,
    #[serde(rename = "ref")]
    reference: String,
}

/// A page of SKUs, in name order (byte order).
#[derive(Serialize, ToSchema)]
pub struct SkuPage {
    items: Vec<super::views::SkuJson>,
    /// Pass as `cursor` for the next page; null at the end.
    #[serde(default)]
    next: Option<String>,
}

/// A page of a SKU's ledger, newest first.
#[derive(Serialize, ToSchema)]
pub struct LedgerPage {
    items: Vec<LedgerItem>,
    /// Pass as `before` for the next page; null at the end.
    #[serde(default)]
    next: Option<String>,
}

/// `POST /v1/admin/webhooks`.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct WebhookBody {
    /// Where each event is POSTed (http or https, no credentials; up to
    /// 2048 characters). A 2xx answer within `webhooks.timeout_ms` is a
    /// delivery; anything else is retried.
    #[schema(
        example = "https://shop.example/hooks/stock",
        max_length = 2048,
        format = "uri"
    )]
    url: String,
    /// The event types it receives; left out or empty: every type.
    #[serde(default)]
    #[schema(example = json!(["sku.out_of_stock", "sku.back_in_stock"]))]
    types: Option<Vec<String>>,
    /// Its signing secret, `whsec_` + 24–64 bytes in base64; left out, one
    /// is made up (and shown in the answer).
    #[serde(default)]
    secret: Option<String>,
    /// What it is for (1–256 printable characters).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    description: Option<String>,
}

/// Every subscription.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    items: Vec<super::webhooks::WebhookView>,
}

/// A page of a subscription's delivery attempts, newest first.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    items: Vec<super::webhooks::DeliveryView>,
    /// Pass as `before` for the next page; null at the end.
    #[serde(default)]
    next: Option<String>,
}

/// Live counts.
#[derive(Serialize, ToSchema)]
pub struct CountsDoc {
    /// Null when the SKU is missing from Redis.
    #[serde(default)]
    on_hand: Option<i64>,
    held: i64,
}

/// One drifted SKU, or one channel's allocation of it (`pool`: its share
/// as on_hand, the units held from it as held; without `pool`, held counts
/// the SKU's shared pool).
#[derive(Serialize, ToSchema)]
pub struct DriftDoc {
    sku: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    expected: CountsDoc,
    actual: CountsDoc,
}

/// What a reconciliation found.
#[derive(Serialize, ToSchema)]
pub struct ReconcileReport {
    checked: u64,
    drifted: Vec<DriftDoc>,
    repaired: bool,
    duration_ms: u64,
}

/// A health answer.
#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    status: String,
}

/// A SKU: 1–64 characters of `A-Z a-z 0-9 . _ : -`.
pub struct SkuId;

impl utoipa::PartialSchema for SkuId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^[A-Za-z0-9._:-]{1,64}$"))
            .min_length(Some(1))
            .max_length(Some(64))
            .into()
    }
}

impl ToSchema for SkuId {}
