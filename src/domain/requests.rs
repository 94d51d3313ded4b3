//! The requests that change stock, parsed from JSON with every problem found
//! listed. The limits they are checked against come from configuration.

use super::validation::{int_in, kind, Body};
use super::{FieldError, OrderId, Role, Sku, MAX_QTY};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;

/// Largest `on_hand` or `backorder_limit` a SKU may be given.
const MAX_STOCK: i64 = 1_000_000_000_000;
/// Longest `customer_id`, `channel` or `payment_ref`.
const MAX_TEXT: usize = 128;

/// Configured limits on requests.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most lines in one request.
    pub max_lines: usize,
    /// TTL when the request names none.
    pub default_ttl_seconds: i64,
    /// Longest TTL a storefront key may ask for.
    pub storefront_ttl_ceiling: i64,
    /// Longest TTL a call-centre (or admin) key may ask for.
    pub callcentre_ttl_ceiling: i64,
    /// Most live hold records read per partition to list a SKU's holds.
    pub holds_scan: usize,
}

impl Limits {
    /// The longest TTL `role` may ask for.
    pub fn ttl_ceiling(&self, role: Role) -> i64 {
        match role {
            Role::Storefront => self.storefront_ttl_ceiling,
            Role::Callcentre | Role::Admin => self.callcentre_ttl_ceiling,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_lines: 500,
            default_ttl_seconds: 900,
            storefront_ttl_ceiling: 3_600,
            callcentre_ttl_ceiling: 86_400,
            holds_scan: 20_000,
        }
    }
}

/// `POST /v1/reservations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    /// Distinct SKUs with summed quantities, in the order first named.
    pub lines: Vec<(Sku, i64)>,
    /// How long to hold.
    pub ttl_seconds: i64,
    /// Who the hold is for.
    pub customer_id: Option<String>,
    /// Which channel asks.
    pub channel: Option<String>,
    /// Hold what is available of short lines instead of refusing.
    pub allow_partial: bool,
}

impl ReserveRequest {
    /// Parses and checks a reservation request made by a key of `role`.
    pub fn parse(body: &Value, role: Role, limits: &Limits) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(
            body,
            &[
                "lines",
                "ttl_seconds",
                "customer_id",
                "channel",
                "allow_partial",
            ],
        )?;
        let lines = match b.get("lines") {
            Some(v) => parse_lines(&mut b, v, 1, limits.max_lines),
            None => {
                b.fail("lines", "is required");
                Vec::new()
            }
        };
        let ttl_seconds = ttl(&mut b, role, limits).unwrap_or(limits.default_ttl_seconds);
        let customer_id = b.text("customer_id", MAX_TEXT);
        let channel = b.text("channel", MAX_TEXT);
        let allow_partial = b.bool("allow_partial").unwrap_or(false);
        b.finish()?;
        Ok(ReserveRequest {
            lines,
            ttl_seconds,
            customer_id,
            channel,
            allow_partial,
        })
    }
}

/// `PATCH /v1/reservations/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRequest {
    /// Distinct SKUs with their new quantities (0 removes the line).
    pub lines: Vec<(Sku, i64)>,
    /// Restart the TTL with this many seconds from now.
    pub ttl_seconds: Option<i64>,
}

impl PatchRequest {
    /// Parses and checks a reservation change made by a key of `role`.
    pub fn parse(body: &Value, role: Role, limits: &Limits) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(body, &["lines", "ttl_seconds"])?;
        let lines = match b.get("lines") {
            Some(v) => parse_lines(&mut b, v, 0, limits.max_lines),
            None => Vec::new(),
        };
        let ttl_seconds = ttl(&mut b, role, limits);
        if b.get("lines").is_none() && b.get("ttl_seconds").is_none() {
            b.fail("", "name at least one of lines and ttl_seconds");
        }
        b.finish()?;
        Ok(PatchRequest { lines, ttl_seconds })
    }
}

/// `POST /v1/reservations/{id}/commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRequest {
    /// The order id to use; generated when absent.
    pub order_id: Option<OrderId>,
    /// The payment service's reference.
    pub payment_ref: Option<String>,
}

impl CommitRequest {
    /// Parses a commit request; an empty body means `{}`.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(body, &["order_id", "payment_ref"])?;
        let order_id = match b.get("order_id") {
            Some(Value::String(s)) => OrderId::parse(s).map_err(|m| b.fail("order_id", m)).ok(),
            Some(other) => {
                b.fail("order_id", format!("must be a string, not {}", kind(other)));
                None
            }
            None => None,
        };
        let payment_ref = b.text("payment_ref", MAX_TEXT);
        b.finish()?;
        Ok(CommitRequest {
            order_id,
            payment_ref,
        })
    }
}

/// A setting a PUT may keep, clear (`null`) or set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting<T> {
    /// Absent: keep what is there.
    Keep,
    /// `null`: remove it.
    Clear,
    /// A new value.
    Set(T),
}

/// Most partitions a hot SKU's stock may spread over.
pub const MAX_BUCKETS: i64 = 16;

/// Most channels with an allocation of one SKU.
pub const MAX_ALLOCATIONS: usize = 32;

/// Pool names the SKU view uses for what is not a channel's allocation.
const RESERVED_POOLS: [&str; 2] = ["shared", "safety"];

/// `PUT /v1/skus/{sku}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutSkuRequest {
    /// New `on_hand` (required when the SKU is new).
    pub on_hand: Option<i64>,
    /// New backorder limit.
    pub backorder_limit: Option<i64>,
    /// New per-customer limit.
    pub per_customer_limit: Setting<i64>,
    /// New sale start.
    pub sale_starts_at: Setting<DateTime<Utc>>,
    /// New number of hot-SKU buckets.
    pub buckets: Option<u16>,
    /// New safety stock.
    pub safety_stock: Option<i64>,
    /// New allocations: every channel's share (channels not named lose
    /// theirs; empty: none).
    pub allocations: Option<Vec<(String, i64)>>,
    /// New low-stock threshold.
    pub low_stock: Setting<i64>,
}

impl PutSkuRequest {
    /// Parses and checks a SKU set-up.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(
            body,
            &[
                "on_hand",
                "backorder_limit",
                "per_customer_limit",
                "sale_starts_at",
                "buckets",
                "safety_stock",
                "allocations",
                "low_stock",
            ],
        )?;
        let on_hand = b.int("on_hand", 0, MAX_STOCK);
        let backorder_limit = b.int("backorder_limit", 0, MAX_STOCK);
        let per_customer_limit = if b.is_null("per_customer_limit") {
            Setting::Clear
        } else {
            b.int("per_customer_limit", 1, MAX_STOCK)
                .map_or(Setting::Keep, Setting::Set)
        };
        let sale_starts_at = match b.get("sale_starts_at") {
            None if b.is_null("sale_starts_at") => Setting::Clear,
            None => Setting::Keep,
            Some(v) => match v.as_str().map(DateTime::parse_from_rfc3339) {
                Some(Ok(t)) => Setting::Set(t.with_timezone(&Utc)),
                _ => {
                    b.fail(
                        "sale_starts_at",
                        "must be an RFC 3339 time, e.g. 2026-12-12T00:00:00Z",
                    );
                    Setting::Keep
                }
            },
        };
        let buckets = b.int("buckets", 1, MAX_BUCKETS).map(|n| n as u16);
        if buckets.is_some_and(|n| n > 1) && backorder_limit.is_some_and(|bo| bo > 0) {
            b.fail("buckets", "cannot spread a SKU with a backorder limit");
        }
        let safety_stock = b.int("safety_stock", 0, MAX_STOCK);
        let low_stock = if b.is_null("low_stock") {
            Setting::Clear
        } else {
            b.int("low_stock", 1, MAX_STOCK)
                .map_or(Setting::Keep, Setting::Set)
        };
        if buckets.is_some_and(|n| n > 1) && matches!(low_stock, Setting::Set(_)) {
            b.fail("buckets", "cannot spread a SKU with a low-stock threshold");
        }
        let allocations = allocations(&mut b);
        let pools = safety_stock.is_some_and(|n| n > 0)
            || allocations.as_ref().is_some_and(|a| !a.is_empty());
        if buckets.is_some_and(|n| n > 1) && pools {
            b.fail(
                "buckets",
                "cannot spread a SKU with allocations or safety stock",
            );
        }
        b.finish()?;
        Ok(PutSkuRequest {
            on_hand,
            backorder_limit,
            per_customer_limit,
            sale_starts_at,
            buckets,
            safety_stock,
            allocations,
            low_stock,
        })
    }
}

/// A channel as a reservation names it: 1–128 printable characters.
pub fn channel_name(s: &str) -> Result<String, String> {
    super::validation::printable_text(&Value::String(s.to_owned()), MAX_TEXT)
}

/// `allocations`: `{ "<channel>": units, … }` (`null` or `{}`: none).
/// Channels are named like SKUs (1–64 of `A-Z a-z 0-9 . _ : -`), other
/// than the pool names `shared` and `safety`.
fn allocations(b: &mut Body<'_>) -> Option<Vec<(String, i64)>> {
    if b.is_null("allocations") {
        return Some(Vec::new());
    }
    let value = b.get("allocations")?;
    let Some(map) = value.as_object() else {
        b.fail(
            "allocations",
            format!("must be an object of channel: units, not {}", kind(value)),
        );
        return None;
    };
    if map.len() > MAX_ALLOCATIONS {
        b.fail(
            "allocations",
            format!("may name at most {MAX_ALLOCATIONS} channels"),
        );
    }
    let mut out = Vec::with_capacity(map.len());
    for (channel, units) in map {
        let field = format!("allocations.{channel}");
        let mut ok = true;
        if let Err(m) = Sku::parse(channel) {
            b.fail(field.clone(), format!("channel name {m}"));
            ok = false;
        } else if RESERVED_POOLS.contains(&channel.as_str()) {
            b.fail(
                field.clone(),
                "is a pool name of the SKU view, not a channel",
            );
            ok = false;
        }
        match int_in(units, 0, MAX_STOCK) {
            Ok(n) if ok => out.push((channel.clone(), n)),
            Ok(_) => {}
            Err(m) => b.fail(field, m),
        }
    }
    Some(out)
}

/// `POST /v1/skus/{sku}/adjustments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentRequest {
    /// The client's id; the adjustment is applied once per id.
    pub adjustment_id: String,
    /// Change of `on_hand` (non-zero).
    pub delta: i64,
    /// Why (receipt, damage, count…).
    pub reason: Option<String>,
}

impl AdjustmentRequest {
    /// Parses and checks an adjustment.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(body, &["adjustment_id", "delta", "reason"])?;
        let adjustment_id = b.text("adjustment_id", MAX_TEXT);
        if b.get("adjustment_id").is_none() {
            b.fail("adjustment_id", "is required");
        }
        let delta = b.int("delta", -MAX_STOCK, MAX_STOCK);
        match b.get("delta") {
            None => b.fail("delta", "is required"),
            Some(_) if delta == Some(0) => b.fail("delta", "must not be 0"),
            Some(_) => {}
        }
        let reason = b.text("reason", MAX_TEXT);
        b.finish()?;
        Ok(AdjustmentRequest {
            adjustment_id: adjustment_id.unwrap_or_default(),
            delta: delta.unwrap_or_default(),
            reason,
        })
    }
}

/// `POST /v1/orders/{order_id}/returns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRequest {
    /// The client's id; the return is recorded once per id.
    pub return_id: String,
    /// Distinct SKUs with summed quantities.
    pub lines: Vec<(Sku, i64)>,
    /// Put the units back into `on_hand`.
    pub restock: bool,
}

impl ReturnRequest {
    /// Parses and checks a return.
    pub fn parse(body: &Value, limits: &Limits) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(body, &["return_id", "lines", "restock"])?;
        let return_id = b.text("return_id", MAX_TEXT);
        if b.get("return_id").is_none() {
            b.fail("return_id", "is required");
        }
        let lines = match b.get("lines") {
            Some(v) => parse_lines(&mut b, v, 1, limits.max_lines),
            None => {
                b.fail("lines", "is required");
                Vec::new()
            }
        };
        let restock = b.bool("restock").unwrap_or(false);
        b.finish()?;
        Ok(ReturnRequest {
            return_id: return_id.unwrap_or_default(),
            lines,
            restock,
        })
    }
}

fn ttl(b: &mut Body<'_>, role: Role, limits: &Limits) -> Option<i64> {
    let ceiling = limits.ttl_ceiling(role);
    let value = b.get("ttl_seconds")?;
    match int_in(value, 1, ceiling) {
        Ok(n) => Some(n),
        Err(m) => {
            b.fail("ttl_seconds", format!("{m} (the ceiling for a {role} key)"));
            None
        }
    }
}

/// Parses `lines`, summing lines that name the same SKU.
fn parse_lines(b: &mut Body<'_>, value: &Value, min_qty: i64, max_lines: usize) -> Vec<(Sku, i64)> {
    let Some(items) = value.as_array() else {
        b.fail("lines", format!("must be an array, not {}", kind(value)));
        return Vec::new();
    };
    if items.is_empty() && min_qty > 0 {
        b.fail("lines", "must name at least one line");
    }
    if items.len() > max_lines {
        b.fail(
            "lines",
            format!("must have at most {max_lines} lines, not {}", items.len()),
        );
        return Vec::new();
    }
    let mut lines: Vec<(Sku, i64)> = Vec::with_capacity(items.len());
    // Where each SKU's line is, so a SKU named again is summed in O(1).
    let mut at_line: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("lines[{i}].{field}");
        let Some(obj) = item.as_object() else {
            b.fail(
                format!("lines[{i}]"),
                format!("must be an object, not {}", kind(item)),
            );
            continue;
        };
        for unknown in obj.keys().filter(|k| *k != "sku" && *k != "qty") {
            b.fail(at(unknown), "is not a known field");
        }
        let sku = match obj.get("sku") {
            Some(Value::String(s)) => Sku::parse(s)
                .map(|sku| (s.as_str(), sku))
                .map_err(|m| b.fail(at("sku"), m))
                .ok(),
            Some(other) => {
                b.fail(at("sku"), format!("must be a string, not {}", kind(other)));
                None
            }
            None => {
                b.fail(at("sku"), "is required");
                None
            }
        };
        let qty = match obj.get("qty") {
            Some(v) => int_in(v, min_qty, MAX_QTY)
                .map_err(|m| b.fail(at("qty"), m))
                .ok(),
            None => {
                b.fail(at("qty"), "is required");
                None
            }
        };
        if let (Some((name, sku)), Some(qty)) = (sku, qty) {
            match at_line.get(name) {
                Some(&n) => lines[n].1 += qty,
                None => {
                    at_line.insert(name, lines.len());
                    lines.push((sku, qty));
                }
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(errors: Vec<FieldError>) -> Vec<String> {
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn lines_naming_the_same_sku_are_summed_in_first_named_order() {
        let body =
            json!({ "lines": [ {"sku":"B","qty":1}, {"sku":"A","qty":2}, {"sku":"B","qty":3} ] });
        let req = ReserveRequest::parse(&body, Role::Storefront, &Limits::default()).unwrap();
        let got: Vec<_> = req.lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        assert_eq!(got, [("B", 4), ("A", 2)]);
        assert_eq!(req.ttl_seconds, 900);
    }

    #[test]
    fn every_problem_in_a_reservation_is_listed() {
        let body = json!({
            "lines": [ {"sku":"bad sku","qty":0}, {"qty":"2"}, 7 ],
            "ttl_seconds": 4000, "customer_id": "", "allow_partial": "yes", "extra": 1
        });
        let errors =
            ReserveRequest::parse(&body, Role::Storefront, &Limits::default()).unwrap_err();
        assert_eq!(
            fields(errors),
            [
                "extra",
                "lines[0].sku",
                "lines[0].qty",
                "lines[1].sku",
                "lines[1].qty",
                "lines[2]",
                "ttl_seconds",
                "customer_id",
                "allow_partial"
            ]
        );
    }

    #[test]
    fn the_call_centre_may_hold_longer_than_the_storefront() {
        let body = json!({ "lines": [ {"sku":"A","qty":1} ], "ttl_seconds": 7200 });
        assert!(ReserveRequest::parse(&body, Role::Storefront, &Limits::default()).is_err());
        assert!(ReserveRequest::parse(&body, Role::Callcentre, &Limits::default()).is_ok());
    }

    #[test]
    fn too_many_lines_are_refused() {
        let limits = Limits {
            max_lines: 2,
            ..Limits::default()
        };
        let body =
            json!({ "lines": [ {"sku":"A","qty":1}, {"sku":"B","qty":1}, {"sku":"C","qty":1} ] });
        assert_eq!(
            fields(ReserveRequest::parse(&body, Role::Admin, &limits).unwrap_err()),
            ["lines"]
        );
    }

    #[test]
    fn a_patch_may_set_zero_but_must_name_something() {
        let body = json!({ "lines": [ {"sku":"A","qty":0} ] });
        assert!(PatchRequest::parse(&body, Role::Storefront, &Limits::default()).is_ok());
        assert!(PatchRequest::parse(&json!({}), Role::Storefront, &Limits::default()).is_err());
    }

    #[test]
    fn a_sku_put_distinguishes_absent_null_and_set() {
        let req =
            PutSkuRequest::parse(&json!({ "on_hand": 5, "per_customer_limit": null })).unwrap();
        assert_eq!(req.per_customer_limit, Setting::Clear);
        assert_eq!(req.sale_starts_at, Setting::Keep);
        let errors =
            PutSkuRequest::parse(&json!({ "on_hand": -1, "sale_starts_at": "soon" })).unwrap_err();
        assert_eq!(fields(errors), ["on_hand", "sale_starts_at"]);
    }

    #[test]
    fn an_adjustment_needs_an_id_and_a_non_zero_delta() {
        let errors = AdjustmentRequest::parse(&json!({ "delta": 0 })).unwrap_err();
        assert_eq!(fields(errors), ["adjustment_id", "delta"]);
        let ok =
            AdjustmentRequest::parse(&json!({ "adjustment_id": "rcv-1", "delta": -3 })).unwrap();
        assert_eq!(ok.delta, -3);
    }

    #[test]
    fn a_return_needs_an_id_and_lines() {
        let errors =
            ReturnRequest::parse(&json!({ "restock": 1 }), &Limits::default()).unwrap_err();
        assert_eq!(fields(errors), ["return_id", "lines", "restock"]);
    }

    #[test]
    fn commit_order_ids_are_checked() {
        assert!(CommitRequest::parse(&json!({})).unwrap().order_id.is_none());
        assert!(CommitRequest::parse(&json!({ "order_id": 5 })).is_err());
    }
}
