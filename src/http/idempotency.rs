//! `Idempotency-Key` on every POST, PATCH and DELETE under `/v1`: the first
//! response is stored (not 5xx: those changed nothing and may be retried) and
//! sent again to a repeat with the same key and body from the same API key.

use super::auth::ApiKeys;
use super::body::read_limited;
use super::error::ApiError;
use crate::domain::FieldError;
use crate::engine::{Begun, Claim, IdempotencyStore, StoredResponse};
use actix_web::body::{self, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse, ResponseError};
use sha2::{Digest, Sha256};

/// The request header.
pub const HEADER: &str = "Idempotency-Key";

/// The middleware of a resource taking the methods in `allow`; other
/// methods pass through to its 405.
pub async fn idempotency(
    allow: &'static str,
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = req.method().clone();
    let mutation = matches!(method, Method::POST | Method::PATCH | Method::DELETE)
        && allow.split(", ").any(|m| m == method.as_str());
    let key = req
        .headers()
        .get(HEADER)
        .map(|v| v.to_str().map(str::to_owned));
    let (Some(key), true) = (key, mutation) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    // Unknown callers are answered 401 by the handler: no key check, nothing stored.
    let caller = req
        .app_data::<web::Data<ApiKeys>>()
        .and_then(|k| k.caller_of(req.request()));
    let store = req.app_data::<web::Data<IdempotencyStore>>().cloned();
    let (Some(caller), Some(store)) = (caller, store) else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let key = match key {
        Ok(k) if (1..=255).contains(&k.len()) => k,
        _ => {
            let error = ApiError::Validation(vec![FieldError::new(
                HEADER,
                "must be 1 to 255 visible ASCII characters",
            )]);
            return Ok(req.into_response(error.error_response()));
        }
    };

    let mut payload = req.take_payload();
    let body = match read_limited(req.request(), &mut payload).await {
        Ok(body) => body,
        Err(e) => return Ok(req.into_response(e.error_response())),
    };
    let fingerprint = hex::encode(
        Sha256::new()
            .chain_update(req.method().as_str())
            .chain_update([0])
            .chain_update(req.uri().to_string())
            .chain_update([0])
            .chain_update(&body)
            .finalize(),
    );
    let refused = |e: ApiError| e.error_response();
    let claim = match store.begin(&caller.id, &key, &fingerprint).await {
        Ok(Begun::Fresh(claim)) => claim,
        Ok(Begun::Replay(stored)) => return Ok(req.into_response(replay(stored))),
        Ok(Begun::Conflict) => {
            let e = ApiError::IdempotencyConflict(
                "this Idempotency-Key was used with a different request",
            );
            return Ok(req.into_response(refused(e)));
        }
        Ok(Begun::InFlight) => {
            let e = ApiError::IdempotencyConflict(
                "a request with this Idempotency-Key is still in progress",
            );
            return Ok(req.into_response(refused(e)));
        }
        Err(e) => return Ok(req.into_response(ApiError::from(e).error_response())),
    };

    req.set_payload(actix_web::dev::Payload::from(body));
    let res = run_claimed(&store, &claim, next.call(req)).await?;
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    let (http_req, http_res) = res.into_parts();
    let (http_res, res_body) = http_res.into_parts();
    let bytes = body::to_bytes(res_body).await.map_err(|e| {
        ApiError::Internal(anyhow::anyhow!("reading the response body: {}", e.into()))
    })?;
    if status.is_server_error() {
        // Nothing changed, or (outcome unknown) a retry of the same request
        // is safe: every operation is idempotent on its ids.
        store.abandon(claim).await;
    } else {
        let stored = StoredResponse {
            status: status.as_u16(),
            content_type,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        };
        if let Err(e) = store.complete(&claim, &fingerprint, stored).await {
            // The request itself succeeded; only its replay record may be missing.
            tracing::warn!(error = ?e, "could not store the idempotent response");
        }
    }
    let http_res = http_res.set_body(bytes).map_into_boxed_body();
    Ok(ServiceResponse::new(http_req, http_res))
}

/// Runs the request, renewing its claim on the key while it runs (most
/// requests end long before the first renewal).
async fn run_claimed<F, T>(store: &IdempotencyStore, claim: &Claim, request: F) -> T
where
    F: std::future::Future<Output = T>,
{
    tokio::pin!(request);
    loop {
        tokio::select! {
            done = &mut request => return done,
            _ = tokio::time::sleep(crate::engine::RENEW_EVERY) => {
                if let Err(e) = store.renew(claim).await {
                    tracing::warn!(error = ?e, "could not renew an idempotency claim");
                }
            }
        }
    }
}

fn replay(stored: StoredResponse) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK))
        .content_type(stored.content_type)
        .insert_header(("Idempotent-Replayed", "true"))
        .body(stored.body)
}
