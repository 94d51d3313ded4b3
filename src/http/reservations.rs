//! Reservations: hold, read, change, commit, release.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::idempotency::HEADER as IDEMPOTENCY_KEY;
use super::schemas::{CommitBody, PatchBody, Problem, ReserveBody};
use super::views::{OrderView, ReservationView};
use crate::domain::{CommitRequest, Limits, PatchRequest, ReservationId, ReserveRequest};
use crate::service::Stock;
use actix_web::{web, HttpRequest, HttpResponse};

/// Registers the reservation routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/reservations", "POST").route(web::post().to(reserve)))
        .service(
            super::resource("/v1/reservations/{id}", "GET, PATCH, DELETE")
                .route(web::get().to(get_reservation))
                .route(web::patch().to(patch_reservation))
                .route(web::delete().to(release_reservation)),
        )
        .service(
            super::resource("/v1/reservations/{id}/commit", "POST")
                .route(web::post().to(commit_reservation)),
        );
}

fn reservation_id(path: &str) -> Result<ReservationId, ApiError> {
    ReservationId::parse(path).ok_or(ApiError::NotFound("reservation"))
}

#[utoipa::path(
    post,
    path = "/v1/reservations",
    tag = "reservations",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = ReserveBody,
    responses(
        (status = 201, description = "Held (with shortages when allow_partial held some lines short)", body = ReservationView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "insufficient_stock, per_customer_limit_exceeded, sale_not_started, idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed, unknown_sku", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn reserve(
    caller: Caller,
    stock: web::Data<Stock>,
    limits: web::Data<Limits>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let request = ReserveRequest::parse(&body.required()?, caller.role, &limits)
        .map_err(ApiError::Validation)?;
    // With an idempotency key the id is derived from it, so a retry whose
    // first answer was lost finds its hold instead of holding twice. The id
    // names the hold's home partition.
    let key = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok());
    let id_for = |home| match key {
        Some(key) => ReservationId::for_idempotency_key(&caller.id, key, home),
        None => ReservationId::random(home),
    };
    let (_, reserved) = stock
        .engine
        .reserve_new(&request, key.is_some(), id_for)
        .await?;
    let shortages = request.allow_partial.then_some(reserved.shortages);
    Ok(HttpResponse::Created().json(ReservationView::new(&reserved.hold, shortages)))
}

#[utoipa::path(
    get,
    path = "/v1/reservations/{id}",
    tag = "reservations",
    params(("id" = String, Path, description = "Reservation id, res_ and 32 hex digits")),
    responses(
        (status = 200, description = "The reservation", body = ReservationView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable; nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_reservation(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let hold = stock
        .reservation(&id)
        .await?
        .ok_or(ApiError::NotFound("reservation"))?;
    Ok(HttpResponse::Ok().json(ReservationView::new(&hold, None)))
}

#[utoipa::path(
    patch,
    path = "/v1/reservations/{id}",
    tag = "reservations",
    params(("id" = String, Path, description = "Reservation id, res_ and 32 hex digits"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = PatchBody,
    responses(
        (status = 200, description = "Changed", body = ReservationView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "insufficient_stock, per_customer_limit_exceeded, sale_not_started, reservation_released, reservation_committed, idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "reservation_expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed, unknown_sku", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(reservation = %path))]
pub(crate) async fn patch_reservation(
    caller: Caller,
    stock: web::Data<Stock>,
    limits: web::Data<Limits>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let request = PatchRequest::parse(&body.required()?, caller.role, &limits)
        .map_err(ApiError::Validation)?;
    let hold = stock.engine.patch(&id, &request).await?;
    Ok(HttpResponse::Ok().json(ReservationView::new(&hold, None)))
}

#[utoipa::path(
    post,
    path = "/v1/reservations/{id}/commit",
    tag = "reservations",
    params(("id" = String, Path, description = "Reservation id, res_ and 32 hex digits"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = Option<CommitBody>,
    responses(
        (status = 201, description = "Sold and in Postgres", body = OrderView),
        (status = 202, description = "Sold; Postgres unreachable, persisted: false", body = OrderView),
        (status = 200, description = "Committed before: the same order", body = OrderView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "reservation_released, idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "reservation_expired", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: no lines left, or order_id used by another order", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(reservation = %path))]
pub(crate) async fn commit_reservation(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let request = CommitRequest::parse(&body.or_empty_object()).map_err(ApiError::Validation)?;
    let outcome = stock.commit(&id, &request).await?;
    let view = OrderView::from(&outcome.order);
    Ok(match (outcome.fresh, outcome.order.persisted) {
        (true, true) => HttpResponse::Created().json(view),
        (true, false) => HttpResponse::Accepted().json(view),
        (false, _) => HttpResponse::Ok().json(view),
    })
}

#[utoipa::path(
    delete,
    path = "/v1/reservations/{id}",
    tag = "reservations",
    params(("id" = String, Path, description = "Reservation id, res_ and 32 hex digits"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    responses(
        (status = 200, description = "Released (or expired before)", body = ReservationView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "reservation_committed, idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a bad Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(reservation = %path))]
pub(crate) async fn release_reservation(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let hold = stock.engine.release(&id).await?;
    Ok(HttpResponse::Ok().json(ReservationView::new(&hold, None)))
}
