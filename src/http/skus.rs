//! SKU set-up, SKU views and availability.

use super::auth::{Admin, Caller};
use super::body::JsonBody;
use super::error::ApiError;
use super::schemas::{AdjustmentBody, LedgerPage, Problem, PutSkuBody, SkuId, SkuPage};
use super::views::{
    self, AvailabilityItem, AvailabilityView, HoldOnSkuView, HoldsOnSkuView, SkuJson,
};
use crate::domain::{AdjustmentRequest, FieldError, Limits, PutSkuRequest, Sku};
use crate::service::Stock;
use actix_web::{web, HttpRequest, HttpResponse};

/// Most SKUs one availability call may ask for.
const MAX_AVAILABILITY_SKUS: usize = 500;

/// Registers the SKU routes (the static path first: a request is matched
/// against the patterns in order).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/availability", "GET").route(web::get().to(availability)))
        .service(super::resource("/v1/skus", "GET").route(web::get().to(list_skus)))
        .service(
            super::resource("/v1/skus/{sku}", "GET, PUT")
                .route(web::put().to(put_sku))
                .route(web::get().to(get_sku)),
        )
        .service(super::resource("/v1/skus/{sku}/ledger", "GET").route(web::get().to(ledger)))
        .service(super::resource("/v1/skus/{sku}/holds", "GET").route(web::get().to(holds)))
        .service(
            super::resource("/v1/skus/{sku}/adjustments", "POST").route(web::post().to(adjust)),
        );
}

#[utoipa::path(
    put,
    path = "/v1/skus/{sku}",
    tag = "skus",
    params(("sku" = SkuId, Path, description = "1–64 characters of A-Z a-z 0-9 . _ : -")),
    request_body = PutSkuBody,
    responses(
        (status = 200, description = "Updated", body = SkuJson),
        (status = 201, description = "Created", body = SkuJson),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "insufficient_stock: available would drop below what holds need; or pool_below_held: allocations or safety stock would take units holds have (pools: [{pool, on_hand, held}])", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed (on_hand is required on create; every bad allocation listed as allocations.<channel>)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(sku = %path))]
pub(crate) async fn put_sku(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let sku = Sku::parse(&path);
    let req = PutSkuRequest::parse(&body.required()?);
    let (sku, req) = match (sku, req) {
        (Ok(sku), Ok(req)) => (sku, req),
        (sku, req) => {
            let mut errors = sku
                .err()
                .map(|m| vec![FieldError::new("sku", m)])
                .unwrap_or_default();
            errors.extend(req.err().unwrap_or_default());
            return Err(ApiError::Validation(errors));
        }
    };
    let put = stock.put_sku(&sku, &req).await?;
    let view = SkuJson::from(&put.view);
    Ok(super::created_or_ok(put.created, view))
}

#[utoipa::path(
    get,
    path = "/v1/skus/{sku}",
    tag = "skus",
    params(("sku" = SkuId, Path, description = "1–64 characters of A-Z a-z 0-9 . _ : -")),
    responses(
        (status = 200, description = "The SKU", body = SkuJson),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: SKU never set up", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable; nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_sku(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sku = Sku::parse(&path).map_err(|_| ApiError::NotFound("SKU"))?;
    let view = stock
        .engine
        .sku(&sku)
        .await?
        .ok_or(ApiError::NotFound("SKU"))?;
    Ok(HttpResponse::Ok().json(SkuJson::from(&view)))
}

#[utoipa::path(
    get,
    path = "/v1/availability",
    tag = "skus",
    params(("sku" = Vec<SkuId>, Query, min_items = 1, max_items = 500, description = "1 to 500 SKUs, repeated: ?sku=A&sku=B"), ("channel" = Option<String>, Query, min_length = 1, max_length = 128, pattern = r"^[^\x00-\x1f\x7f]+$", description = "what a reservation of this channel may hold: the shared pool and the channel's allocation (without: the shared pool only)")),
    responses(
        (status = 200, description = "Availability in the order asked; unknown SKUs 0", body = AvailabilityView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable; nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn availability(
    _caller: Caller,
    stock: web::Data<Stock>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut skus = Vec::new();
    let mut errors = Vec::new();
    let mut asked = 0;
    let mut channel = None;
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        if name == "channel" {
            match crate::domain::channel_name(&value) {
                Ok(c) if channel.is_none() => channel = Some(c),
                Ok(_) => errors.push(FieldError::new("channel", "name one channel only")),
                Err(m) => errors.push(FieldError::new("channel", m)),
            }
            continue;
        }
        if name != "sku" {
            errors.push(FieldError::new(name.as_ref(), "is not a known parameter"));
            continue;
        }
        match Sku::parse(&value) {
            Ok(sku) => skus.push(sku),
            Err(m) => errors.push(FieldError::new(format!("sku[{asked}]"), m)),
        }
        asked += 1;
    }
    if asked == 0 {
        errors.push(FieldError::new(
            "sku",
            "name at least one SKU: ?sku=A&sku=B",
        ));
    } else if asked > MAX_AVAILABILITY_SKUS {
        errors.push(FieldError::new(
            "sku",
            format!("at most {MAX_AVAILABILITY_SKUS} SKUs per call, not {asked}"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let available = stock.engine.availability(&skus, channel.as_deref()).await?;
    let items = skus
        .iter()
        .zip(available)
        .map(|(sku, available)| {
            let available = available.unwrap_or(0);
            AvailabilityItem {
                sku: sku.to_string(),
                available,
                in_stock: available > 0,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(AvailabilityView { items }))
}

/// Most SKUs per page of the SKU list.
const MAX_SKU_PAGE: i64 = 500;

#[utoipa::path(
    get,
    path = "/v1/skus",
    tag = "skus",
    params(("prefix" = Option<String>, Query, max_length = 64, pattern = r"^[A-Za-z0-9._:-]{0,64}$", description = "only SKUs whose name starts with this (0–64 of A-Z a-z 0-9 . _ : -)"), ("cursor" = Option<SkuId>, Query, description = "next from the previous page"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 100")),
    responses(
        (status = 200, description = "A page of SKUs in name order (byte order), each with its live counts", body = SkuPage),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a bad prefix, cursor or limit, or another parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `GET /v1/skus?prefix=&cursor=&limit=`: the SKUs set up (as the ledger
/// has them), a page at a time in name order, each with its live view.
pub(crate) async fn list_skus(
    _admin: Admin,
    stock: web::Data<Stock>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut prefix = String::new();
    let mut cursor = None;
    let mut limit = 100;
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match name.as_ref() {
            "prefix" if value.is_empty() => {}
            "prefix" => match Sku::parse(&value) {
                Ok(_) => prefix = value.into_owned(),
                Err(m) => errors.push(FieldError::new("prefix", m)),
            },
            "cursor" => match Sku::parse(&value) {
                Ok(sku) => cursor = Some(sku),
                Err(_) => errors.push(FieldError::new(
                    "cursor",
                    "must be a cursor from an earlier page's next",
                )),
            },
            "limit" => match super::parse_limit(&value, MAX_SKU_PAGE) {
                Ok(n) => limit = n,
                Err(e) => errors.push(e),
            },
            other => errors.push(FieldError::new(other, "is not a known parameter")),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let names = stock
        .ledger
        .sku_names(&prefix, cursor.as_ref().map(Sku::as_str), limit + 1)
        .await
        .map_err(ApiError::from)?;
    let more = names.len() as i64 > limit;
    let names: Vec<Sku> = names
        .iter()
        .take(limit as usize)
        .filter_map(|n| Sku::parse(n).ok())
        .collect();
    // The live views, a few at a time (each one script call).
    let mut items = Vec::with_capacity(names.len());
    for chunk in names.chunks(50) {
        let views =
            futures_util::future::try_join_all(chunk.iter().map(|s| stock.engine.sku(s))).await?;
        // A SKU recorded but not (yet, or no longer) in Redis is left out.
        items.extend(views.iter().flatten().map(SkuJson::from));
    }
    let next = more.then(|| names.last().map(Sku::to_string)).flatten();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}

/// Most ledger rows per page.
const MAX_LEDGER_PAGE: i64 = 1000;

#[utoipa::path(
    get,
    path = "/v1/skus/{sku}/ledger",
    tag = "admin",
    params(("sku" = SkuId, Path, description = "1–64 characters of A-Z a-z 0-9 . _ : -"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"), ("before" = Option<String>, Query, pattern = r"^[1-9][0-9]{0,17}$", description = "next from the previous page")),
    responses(
        (status = 200, description = "Newest first", body = LedgerPage),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable; nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn ledger(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let sku = Sku::parse(&path).map_err(|_| ApiError::NotFound("SKU"))?;
    let (limit, before) = super::page(&req, MAX_LEDGER_PAGE)?;
    let rows = stock
        .ledger
        .movements(sku.as_str(), before, limit + 1)
        .await
        .map_err(ApiError::from)?
        .ok_or(ApiError::NotFound("SKU"))?;
    let more = rows.len() as i64 > limit;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .take(limit as usize)
        .map(|m| {
            serde_json::json!({
                "id": m.id.to_string(), "at": views::time(m.at), "kind": m.kind,
                "delta": m.delta, "on_hand_after": m.on_hand_after, "ref": m.reference,
            })
        })
        .collect();
    let next = more.then(|| rows[limit as usize - 1].id.to_string());
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}

#[utoipa::path(
    post,
    path = "/v1/skus/{sku}/adjustments",
    tag = "skus",
    params(("sku" = SkuId, Path, description = "1–64 characters of A-Z a-z 0-9 . _ : -"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = AdjustmentBody,
    responses(
        (status = 201, description = "Applied", body = SkuJson),
        (status = 200, description = "Applied before under this adjustment_id; nothing changed", body = SkuJson),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: SKU never set up", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "insufficient_stock: on_hand would drop below held; idempotency_conflict: adjustment_id used for another change", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(sku = %path))]
pub(crate) async fn adjust(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let sku = Sku::parse(&path).map_err(|_| ApiError::NotFound("SKU"))?;
    let req = AdjustmentRequest::parse(&body.required()?).map_err(ApiError::Validation)?;
    let (view, fresh) = stock.adjust(&sku, &req).await?;
    let view = SkuJson::from(&view);
    Ok(super::created_or_ok(fresh, view))
}

/// Most holds listed per call.
const MAX_HOLDS_PAGE: i64 = 500;

#[utoipa::path(
    get,
    path = "/v1/skus/{sku}/holds",
    tag = "admin",
    params(("sku" = SkuId, Path, description = "1–64 characters of A-Z a-z 0-9 . _ : -"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "1 to 500, default 100")),
    responses(
        (status = 200, description = "The live holds with units of the SKU, soonest to expire first", body = HoldsOnSkuView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found: SKU never set up", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn holds(
    _admin: Admin,
    stock: web::Data<Stock>,
    limits: web::Data<Limits>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let limit = super::limit(&req, MAX_HOLDS_PAGE)?;
    let sku = Sku::parse(&path).map_err(|_| ApiError::NotFound("SKU"))?;
    stock
        .engine
        .sku(&sku)
        .await?
        .ok_or(ApiError::NotFound("SKU"))?;
    let found = stock.engine.holds_on(&sku, limits.holds_scan).await?;
    Ok(HttpResponse::Ok().json(HoldsOnSkuView {
        total: found.holds.len(),
        items: found
            .holds
            .iter()
            .take(limit as usize)
            .map(HoldOnSkuView::from)
            .collect(),
        scanned: found.scanned,
        complete: found.complete,
    }))
}
