//! Reservations: hold, read, change, commit, release.

use super::auth::Caller;
use super::body::JsonBody;
use super::error::ApiError;
use super::idempotency::HEADER as IDEMPOTENCY_KEY;
use super::views::{OrderView, ReservationView};
use crate::domain::{CommitRequest, Limits, PatchRequest, ReservationId, ReserveRequest};
use crate::service::Stock;
use actix_web::{web, HttpRequest, HttpResponse};

/// Registers the reservation routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/reservations", "POST").route(web::post().to(reserve)))
        .service(
            super::resource("/reservations/{id}", "GET, PATCH, DELETE")
                .route(web::get().to(get_reservation))
                .route(web::patch().to(patch_reservation))
                .route(web::delete().to(release_reservation)),
        )
        .service(
            super::resource("/reservations/{id}/commit", "POST")
                .route(web::post().to(commit_reservation)),
        );
}

fn reservation_id(path: &str) -> Result<ReservationId, ApiError> {
    ReservationId::parse(path).ok_or(ApiError::NotFound("reservation"))
}

#[tracing::instrument(skip_all)]
async fn reserve(
    caller: Caller,
    stock: web::Data<Stock>,
    limits: web::Data<Limits>,
    req: HttpRequest,
    body: JsonBody,
) -> Result<HttpResponse, ApiError> {
    let request = ReserveRequest::parse(&body.required()?, caller.role, &limits)
        .map_err(ApiError::Validation)?;
    // With an idempotency key the id is derived from it, so a retry whose
    // first answer was lost finds its hold instead of holding twice.
    let id = match req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
    {
        Some(key) => ReservationId::for_idempotency_key(&caller.id, key),
        None => ReservationId::random(),
    };
    let reserved = stock.engine.reserve(&id, &request).await?;
    let shortages = request.allow_partial.then_some(reserved.shortages);
    Ok(HttpResponse::Created().json(ReservationView::new(&reserved.hold, shortages)))
}

async fn get_reservation(
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

#[tracing::instrument(skip_all, fields(reservation = %path))]
async fn patch_reservation(
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

#[tracing::instrument(skip_all, fields(reservation = %path))]
async fn commit_reservation(
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

#[tracing::instrument(skip_all, fields(reservation = %path))]
async fn release_reservation(
    _caller: Caller,
    stock: web::Data<Stock>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = reservation_id(&path)?;
    let hold = stock.engine.release(&id).await?;
    Ok(HttpResponse::Ok().json(ReservationView::new(&hold, None)))
}
