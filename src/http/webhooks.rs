//! `/v1/admin/webhooks`: subscriptions that receive events by HTTP POST
//! (delivered by `crate::events::webhooks`), and their delivery records.

use super::auth::Admin;
use super::body::JsonBody;
use super::error::ApiError;
use super::schemas::{DeliveryPage, Problem, WebhookBody, WebhookList};
use super::views::time;
use crate::domain::{new_secret, Delivery, Webhook, WebhookRequest};
use crate::events::{webhooks::position_now, Hub};
use crate::service::Stock;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        super::resource("/v1/admin/webhooks", "GET, POST")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        super::resource("/v1/admin/webhooks/{id}", "GET, DELETE")
            .route(web::get().to(get))
            .route(web::delete().to(delete)),
    )
    .service(
        super::resource("/v1/admin/webhooks/{id}/deliveries", "GET")
            .route(web::get().to(deliveries)),
    )
    .service(
        super::resource("/v1/admin/webhooks/{id}/resume", "POST").route(web::post().to(resume)),
    );
}

/// A subscription.
#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: String,
    url: String,
    /// The event types it receives (empty: every type).
    types: Vec<String>,
    description: Option<String>,
    /// The signing secret (Standard Webhooks: `whsec_` + base64 key).
    secret: String,
    /// `active` or `paused` (every attempt failed for
    /// `webhooks.pause_after_seconds`; resume it to go on).
    status: String,
    paused_reason: Option<String>,
    /// Failed attempts in a row (0 while deliveries succeed).
    failures: i32,
    #[schema(format = DateTime)]
    failing_since: Option<String>,
    /// When the failed delivery is tried again.
    #[schema(format = DateTime)]
    next_attempt_at: Option<String>,
    /// Events delivered so far.
    delivered: i64,
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView {
            id: w.id.to_string(),
            url: w.url.clone(),
            types: w.types.clone(),
            description: w.description.clone(),
            secret: w.secret.clone(),
            status: w.status.clone(),
            paused_reason: w.paused_reason.clone(),
            failures: w.failures,
            failing_since: w.failing_since.map(time),
            next_attempt_at: w.next_attempt_at.map(time),
            delivered: w.delivered,
            created_at: time(w.created_at),
        }
    }
}

/// One attempt to deliver an event.
#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    id: String,
    /// The event's id (`webhook-id`); for a gap, the last event lost.
    event_id: String,
    /// Its type, or `gap`: events trimmed before they could be delivered.
    event_type: String,
    /// 1 for the first attempt at the event, 2 for the next…
    attempt: i32,
    /// The receiver's HTTP status, if it answered.
    status: Option<i32>,
    error: Option<String>,
    duration_ms: i32,
    delivered: bool,
    #[schema(format = DateTime)]
    at: String,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        DeliveryView {
            id: d.id.to_string(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            attempt: d.attempt,
            status: d.status,
            error: d.error.clone(),
            duration_ms: d.duration_ms,
            delivered: d.delivered,
            at: time(d.at),
        }
    }
}

/// A webhook id from the path; unknown when it is not a UUID.
fn webhook_id(path: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(path).map_err(|_| ApiError::NotFound("webhook"))
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks",
    tag = "webhooks",
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat with the same body gets the first response")),
    request_body = WebhookBody,
    responses(
        (status = 201, description = "Subscribed: it receives the events from now on", body = WebhookView),
        (status = 400, description = "malformed_json", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "payload_too_large: body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a bad url, type or secret, or another field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis or Postgres unreachable, nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `POST /v1/admin/webhooks`: a new subscription.
pub(crate) async fn create(
    _admin: Admin,
    stock: web::Data<Stock>,
    hub: web::Data<Hub>,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let req = WebhookRequest::parse(&body.required()?).map_err(ApiError::Validation)?;
    let secret = req.secret.clone().unwrap_or_else(new_secret);
    let position = position_now(&hub).await?;
    let hook = stock
        .ledger
        .create_webhook(&req, &secret, &position)
        .await?;
    Ok(HttpResponse::Created().json(WebhookView::from(&hook)))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every subscription, oldest first", body = WebhookList),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Postgres unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `GET /v1/admin/webhooks`.
pub(crate) async fn list(
    _admin: Admin,
    stock: web::Data<Stock>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !req.query_string().is_empty() {
        let errors = form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(name, _)| crate::domain::FieldError::new(name, "is not a known parameter"))
            .collect();
        return Err(ApiError::Validation(errors));
    }
    let items: Vec<WebhookView> = stock
        .ledger
        .webhooks()
        .await?
        .iter()
        .map(WebhookView::from)
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items })))
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "the subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = WebhookView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Postgres unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `GET /v1/admin/webhooks/{id}`.
pub(crate) async fn get(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let hook = stock
        .ledger
        .webhook(id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    Ok(HttpResponse::Ok().json(WebhookView::from(&hook)))
}

#[utoipa::path(
    delete,
    path = "/v1/admin/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "the subscription's id"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat gets the first response")),
    responses(
        (status = 204, description = "Deleted, with its delivery records; nothing more is sent to it"),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a bad Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Postgres unreachable, nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `DELETE /v1/admin/webhooks/{id}`.
pub(crate) async fn delete(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    if stock.ledger.delete_webhook(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/resume",
    tag = "webhooks",
    params(("id" = String, Path, description = "the subscription's id"), ("Idempotency-Key" = Option<String>, Header, nullable = false, min_length = 1, max_length = 255, description = "1–255 visible ASCII characters; a repeat gets the first response")),
    responses(
        (status = 200, description = "Active again: delivery goes on from where it stopped (events older than the retention window are recorded as a gap)", body = WebhookView),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "idempotency_conflict", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: a bad Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Postgres unreachable, nothing was changed", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `POST /v1/admin/webhooks/{id}/resume`.
pub(crate) async fn resume(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let hook = stock
        .ledger
        .resume_webhook(id)
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    Ok(HttpResponse::Ok().json(WebhookView::from(&hook)))
}

/// Most delivery records per page.
const MAX_DELIVERY_PAGE: i64 = 1000;

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = String, Path, description = "the subscription's id"), ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000, default 100"), ("before" = Option<String>, Query, pattern = r"^[1-9][0-9]{0,17}$", description = "next from the previous page")),
    responses(
        (status = 200, description = "Its delivery attempts, newest first", body = DeliveryPage),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: the key is not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Postgres unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `GET /v1/admin/webhooks/{id}/deliveries?limit=&before=`.
pub(crate) async fn deliveries(
    _admin: Admin,
    stock: web::Data<Stock>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&path)?;
    let (limit, before) = super::page(&req, MAX_DELIVERY_PAGE)?;
    if stock.ledger.webhook(id).await?.is_none() {
        return Err(ApiError::NotFound("webhook"));
    }
    let rows = stock
        .ledger
        .webhook_deliveries(id, before, limit + 1)
        .await?;
    let more = rows.len() as i64 > limit;
    let items: Vec<DeliveryView> = rows
        .iter()
        .take(limit as usize)
        .map(DeliveryView::from)
        .collect();
    let next = more.then(|| rows[limit as usize - 1].id.to_string());
    Ok(HttpResponse::Ok().json(serde_json::json!({ "items": items, "next": next })))
}
