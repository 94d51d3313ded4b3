//! Orders and returns.

use super::auth::{Admin, Caller};
use super::body::JsonBody;
use super::error::ApiError;
use super::schemas::{Problem, ReturnBody};
use super::views::OrderView;
use crate::domain::{Limits, OrderId, ReturnRequest};
use crate::service::Stock;
use actix_web::{web, HttpResponse};

/// Registers the order routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/orders/{order_id}", "GET").route(web::get().to(get_order)))
        .service(
            super::resource("/v1/orders/{order_id}/returns", "POST")
                .route(web::post().to(return_order)),
        );
}

#[utoipa::path(
    get,
    path = "/v1/orders/{order_id}",
    tag = "orders",
    params(("order_id" = String, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order (persisted: false while only in the outbox)", body = OrderView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable; nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get_order(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let order_id = OrderId::parse(&path).map_err(|_| ApiError::NotFound("order"))?;
    let order = stock
        .order(&order_id)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    Ok(HttpResponse::Ok().json(OrderView::from(&order)))
}

#[utoipa::path(
    post,
    path = "/v1/orders/{order_id}/returns",
    tag = "orders",
    params(("order_id" = String, Path, description = "Order id"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = ReturnBody,
    responses(
        (status = 201, description = "Recorded; the order with returned_qty", body = OrderView),
        (status = 200, description = "Recorded before under this return_id", body = OrderView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "return_exceeds_order, idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed; or outcome_unknown: the change was sent to Redis and not answered in time, it may have been made (retry with the same Idempotency-Key)", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(order = %path))]
pub(crate) async fn return_order(
    _admin: Admin,
    stock: web::Data<Stock>,
    limits: web::Data<Limits>,
    path: web::Path<String>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let order_id = OrderId::parse(&path).map_err(|_| ApiError::NotFound("order"))?;
    let req = ReturnRequest::parse(&body.required()?, &limits).map_err(ApiError::Validation)?;
    let (order, fresh) = stock.return_order(&order_id, &req).await?;
    let view = OrderView::from(&order);
    Ok(super::created_or_ok(fresh, view))
}
