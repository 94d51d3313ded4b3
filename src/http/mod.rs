//! The HTTP API of API.md: request parsing, authentication, handlers and
//! problem+json errors. Handlers call the engine and the ledger through
//! [`crate::service::Stock`]; there is no Redis or SQL here.

pub mod admin;
pub mod auth;
pub mod body;
pub mod console;
pub mod error;
pub mod events;
pub mod health;
pub mod idempotency;
pub mod observe;
pub mod openapi;
pub mod orders;
pub mod reservations;
pub mod schemas;
pub mod skus;
pub mod views;
pub mod webhooks;

use crate::domain::FieldError;
use actix_web::{web, HttpRequest, HttpResponse};
use error::ApiError;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    // The API's resources name their whole path ("/v1/…") rather than sit
    // in a `/v1` scope: one pattern match a request fewer, and the path is
    // the route label of the metrics as it is. A request is matched against
    // the patterns in this order (those with `{…}` by a regex each): the
    // hot paths first.
    health::configure(cfg);
    reservations::configure(cfg);
    skus::configure(cfg);
    orders::configure(cfg);
    admin::configure(cfg);
    events::configure(cfg);
    webhooks::configure(cfg);
    openapi::configure(cfg);
    console::configure(cfg);
}

/// `201` with `body` when the call made something, `200` when it had been
/// made before (an idempotent repeat).
pub(crate) fn created_or_ok(created: bool, body: impl serde::Serialize) -> HttpResponse {
    if created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

/// The `limit` (1..=`max`, default 100) and `before` (a cursor: the id the
/// previous page ended at) of a page newest first, the only parameters.
pub(crate) fn page(req: &HttpRequest, max: i64) -> Result<(i64, Option<i64>), ApiError> {
    limit_and(req, max, true)
}

/// The `limit` (1..=`max`, default 100) of a list, the only parameter.
pub(crate) fn limit(req: &HttpRequest, max: i64) -> Result<i64, ApiError> {
    Ok(limit_and(req, max, false)?.0)
}

/// A `limit` parameter's value: an integer from 1 to `max`.
pub(crate) fn parse_limit(value: &str, max: i64) -> Result<i64, FieldError> {
    match value.parse::<i64>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(FieldError::new(
            "limit",
            format!("must be an integer from 1 to {max}"),
        )),
    }
}

/// `limit`, and `before` when `paged`.
fn limit_and(req: &HttpRequest, max: i64, paged: bool) -> Result<(i64, Option<i64>), ApiError> {
    let mut limit = 100.min(max);
    let mut before = None;
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match name.as_ref() {
            "limit" => match parse_limit(&value, max) {
                Ok(n) => limit = n,
                Err(e) => errors.push(e),
            },
            "before" if paged => match value.parse::<i64>() {
                Ok(n) if n > 0 => before = Some(n),
                _ => errors.push(FieldError::new(
                    "before",
                    "must be a cursor from an earlier page's next",
                )),
            },
            other => errors.push(FieldError::new(other, "is not a known parameter")),
        }
    }
    if errors.is_empty() {
        Ok((limit, before))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The answer for paths the API does not have.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("resource"))
}

/// The answer for a method a path does not have, naming those it has.
fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut res = error::problem(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "Method not allowed",
        &format!("this path takes {allow}"),
        None,
    );
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    res
}

/// The path pattern of the resource a request reached (a request
/// extension), for the route label of the metrics.
#[derive(Debug, Clone, Copy)]
pub struct Route(pub &'static str);

/// A resource taking the methods in `allow` (e.g. "GET, PUT"); any other
/// method gets a problem+json 405 with an `Allow` header. Its mutations
/// honour `Idempotency-Key`. Requests it gets carry its [`Route`].
pub(crate) fn resource(
    path: &'static str,
    allow: &'static str,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    web::resource(path)
        .default_service(web::to(move || async move { method_not_allowed(allow) }))
        .wrap(actix_web::middleware::from_fn(
            move |req: actix_web::dev::ServiceRequest, next| {
                actix_web::HttpMessage::extensions_mut(&req).insert(Route(path));
                idempotency::idempotency(allow, req, next)
            },
        ))
}
