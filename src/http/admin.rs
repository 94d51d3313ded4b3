//! Administration: reconciliation on demand, and the overview of the
//! admin console.

use super::auth::Admin;
use super::body::JsonBody;
use super::error::ApiError;
use super::schemas::{Problem, ReconcileBody, ReconcileReport};
use super::views::{time, MinuteCount, OverviewView};
use crate::domain::{FieldError, ReconcileMode, Sku};
use crate::reconciler::{Reconciler, Report};
use crate::service::Stock;
use actix_web::{web, HttpResponse};
use chrono::DateTime;
use serde_json::{json, Value};

/// Most SKUs one reconcile call may name.
const MAX_RECONCILE_SKUS: usize = 10_000;

/// Registers the admin routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/admin/reconcile", "POST").route(web::post().to(reconcile)))
        .service(super::resource("/v1/admin/overview", "GET").route(web::get().to(overview)));
}

/// `{ "repair": false, "skus": ["A"] }`, both optional.
fn parse(body: &Value) -> Result<(bool, Option<Vec<Sku>>), Vec<FieldError>> {
    let Some(map) = body.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    let mut errors: Vec<FieldError> = map
        .keys()
        .filter(|k| *k != "repair" && *k != "skus")
        .map(|k| FieldError::new(k.as_str(), "is not a known field"))
        .collect();
    let repair = match map.get("repair") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new("repair", "must be true or false"));
            false
        }
    };
    let skus = match map.get("skus") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.len() <= MAX_RECONCILE_SKUS => {
            let mut skus = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(Sku::parse) {
                    Some(Ok(sku)) => skus.push(sku),
                    Some(Err(m)) => errors.push(FieldError::new(format!("skus[{i}]"), m)),
                    None => errors.push(FieldError::new(format!("skus[{i}]"), "must be a string")),
                }
            }
            Some(skus)
        }
        Some(Value::Array(_)) => {
            errors.push(FieldError::new(
                "skus",
                format!("at most {MAX_RECONCILE_SKUS} SKUs"),
            ));
            None
        }
        Some(_) => {
            errors.push(FieldError::new("skus", "must be an array of SKUs"));
            None
        }
    };
    if errors.is_empty() {
        Ok((repair, skus))
    } else {
        Err(errors)
    }
}

/// The report as API.md shows it.
pub fn report_json(report: &Report) -> Value {
    let drifted: Vec<Value> = report
        .drifted
        .iter()
        .map(|d| {
            let mut row = json!({
                "sku": d.sku,
                "expected": { "on_hand": d.expected_on_hand, "held": d.expected_held },
                "actual": { "on_hand": d.actual_on_hand, "held": d.actual_held },
            });
            // A channel's allocation: its share and the units held from it.
            if let Some(channel) = &d.pool {
                row["pool"] = json!(channel);
            }
            row
        })
        .collect();
    json!({
        "checked": report.checked,
        "drifted": drifted,
        "repaired": report.repaired,
        "duration_ms": report.duration.as_millis() as u64,
    })
}

#[utoipa::path(
    post,
    path = "/v1/admin/reconcile",
    tag = "admin",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = Option<ReconcileBody>,
    responses(
        (status = 200, description = "What was found (and repaired)", body = ReconcileReport),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all)]
pub(crate) async fn reconcile(
    _admin: Admin,
    reconciler: web::Data<Reconciler>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let (repair, skus) = parse(&body.or_empty_object()).map_err(ApiError::Validation)?;
    let mode = if repair {
        ReconcileMode::Repair
    } else {
        ReconcileMode::Check
    };
    let report = reconciler
        .reconcile(mode, skus.as_deref())
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(HttpResponse::Ok().json(report_json(&report)))
}

#[utoipa::path(
    get,
    path = "/v1/admin/overview",
    tag = "admin",
    responses(
        (status = 200, description = "The figures of the console's overview; those from Postgres are null while it cannot be reached", body = OverviewView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: it takes no parameters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn overview(
    _admin: Admin,
    stock: web::Data<Stock>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let unknown: Vec<FieldError> = form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(name, _)| FieldError::new(name.as_ref(), "is not a known parameter"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Validation(unknown));
    }
    let o = stock.overview().await?;
    Ok(HttpResponse::Ok().json(OverviewView {
        skus: o.skus,
        live_holds: o.live_holds,
        outbox_lag_ms: o.outbox_lag_ms,
        not_persisted_per_minute: o
            .not_persisted_per_minute
            .into_iter()
            .map(|(minute, count)| MinuteCount {
                minute: time(DateTime::from_timestamp(minute * 60, 0).unwrap_or_default()),
                count,
            })
            .collect(),
        partitions: stock.engine.partitions().count(),
        at: time(o.at),
    }))
}
