//! Every request gets a request id (an incoming `x-request-id` is reused), a
//! tracing span carrying it, its count and latency in the metrics, and a log
//! line when it ends if the `access` target is on.

use super::Route;
use crate::metrics::{HTTP_DURATION, HTTP_REQUESTS};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::HttpMessage;
use std::time::Instant;
use tracing::Instrument;

/// The target of the per-request log line ("request finished"), off
/// unless the log filter turns it on (`access=info`): at a flash sale's
/// rate, writing a line per request cost more than the request itself.
pub const ACCESS_LOG: &str = "access";

/// The request id header.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The middleware (use with `actix_web::middleware::from_fn`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, %method, path = req.path());
    let mut res = next.call(req).instrument(span.clone()).await?;
    let status = res.status().as_u16();
    // The resource's pattern, not the path: bounded label values.
    let route = res
        .request()
        .extensions()
        .get::<Route>()
        .map_or("unmatched", |r| r.0);
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            target: ACCESS_LOG,
            route,
            status,
            ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    let labels = [
        ("route", metrics::SharedString::const_str(route)),
        ("method", method_label(&method)),
        ("status", status.to_string().into()),
    ];
    metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
    metrics::histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(res)
}

/// A method as a label value, without allocating for the usual ones.
fn method_label(method: &Method) -> metrics::SharedString {
    let known = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return method.to_string().into(),
    };
    metrics::SharedString::const_str(known)
}
