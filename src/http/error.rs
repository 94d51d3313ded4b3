//! The API's one error type, rendered as RFC 9457 problem+json with the
//! stable `code` of API.md. Rejections of the stock rules are mapped here,
//! never in handlers.

use crate::domain::{
    FieldError, LimitBreach, PoolShort, Rejection, ReturnExcess, Role, Shortage, Sku,
};
use crate::engine::EngineError;
use crate::ledger::LedgerError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::fmt;

/// Everything an API call can answer instead of success.
#[derive(thiserror::Error)]
pub enum ApiError {
    /// 422 `validation_failed`: every problem found.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400 `malformed_json`.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// 401 `unauthorized`.
    #[error("unauthorized")]
    Unauthorized,
    /// 403 `forbidden`.
    #[error("forbidden")]
    Forbidden(Role),
    /// 404 `not_found`.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 422 `unknown_sku`.
    #[error("unknown SKUs")]
    UnknownSku(Vec<Sku>),
    /// 409 `insufficient_stock`.
    #[error("insufficient stock")]
    InsufficientStock(Vec<Shortage>),
    /// 409 `pool_below_held`: allocations or safety stock would take
    /// units some holds have.
    #[error("pool below what is held")]
    PoolBelowHeld(Vec<PoolShort>),
    /// 409 `per_customer_limit_exceeded`.
    #[error("per-customer limit exceeded")]
    LimitExceeded(Vec<LimitBreach>),
    /// 409 `sale_not_started`.
    #[error("sale not started")]
    SaleNotStarted(Vec<(Sku, DateTime<Utc>)>),
    /// 410 `reservation_expired`.
    #[error("reservation expired")]
    Expired,
    /// 410 `reservation_lost`: Redis lost the hold in a restart or failover.
    #[error("reservation lost")]
    Lost,
    /// 409 `reservation_released`.
    #[error("reservation released")]
    Released,
    /// 409 `reservation_committed`.
    #[error("reservation committed")]
    Committed,
    /// 409 `return_exceeds_order`.
    #[error("return exceeds order")]
    ReturnExceedsOrder(Vec<ReturnExcess>),
    /// 409 `idempotency_conflict`.
    #[error("idempotency conflict: {0}")]
    IdempotencyConflict(&'static str),
    /// 410 `event_id_too_old`: the events after a client's position are
    /// gone.
    #[error("event id too old")]
    EventsGone(String),
    /// 413 `payload_too_large`.
    #[error("payload too large")]
    PayloadTooLarge(usize),
    /// 503 `unavailable`: Redis or Postgres unreachable; nothing changed.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 503 `outcome_unknown`: a change was sent to Redis and not answered
    /// in time; it may have been made. A retry with the same key is safe.
    #[error("outcome unknown")]
    OutcomeUnknown(#[source] anyhow::Error),
    /// 500: a bug; details go to the log, not the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl fmt::Debug for ApiError {
    /// Writes the error with its whole cause chain, for the logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let field = |f: &str, m: String| ApiError::Validation(vec![FieldError::new(f, m)]);
        match r {
            Rejection::NotFound => ApiError::NotFound("reservation"),
            Rejection::SkuNotFound => ApiError::NotFound("SKU"),
            Rejection::OrderNotFound => ApiError::NotFound("order"),
            Rejection::IdReused => {
                ApiError::IdempotencyConflict("this id was already used for a different change")
            }
            Rejection::ReturnExceedsOrder(lines) => ApiError::ReturnExceedsOrder(lines),
            Rejection::Expired => ApiError::Expired,
            Rejection::Lost => ApiError::Lost,
            Rejection::Released => ApiError::Released,
            Rejection::Committed => ApiError::Committed,
            Rejection::Empty => field(
                "lines",
                "the reservation has no lines left to commit".into(),
            ),
            Rejection::OrderTaken => field("order_id", "is already the id of another order".into()),
            Rejection::OnHandRequired => field("on_hand", "is required to create a SKU".into()),
            Rejection::BadSetting { field: f, message } => field(f, message.into()),
            Rejection::UnknownSku(skus) => ApiError::UnknownSku(skus),
            Rejection::CustomerRequired(skus) => ApiError::Validation(
                skus.iter()
                    .map(|s| {
                        FieldError::new(
                            "customer_id",
                            format!("is required: {s} has a per-customer limit"),
                        )
                    })
                    .collect(),
            ),
            Rejection::SaleNotStarted(skus) => ApiError::SaleNotStarted(skus),
            Rejection::LimitExceeded(breaches) => ApiError::LimitExceeded(breaches),
            Rejection::Insufficient(shortages) => ApiError::InsufficientStock(shortages),
            Rejection::PoolBelowHeld(pools) => ApiError::PoolBelowHeld(pools),
            Rejection::BelowHeld {
                sku,
                requested,
                held,
            } => ApiError::InsufficientStock(vec![Shortage {
                sku,
                requested: held,
                available: requested,
            }]),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Rejected(r) => r.into(),
            EngineError::Unavailable(e) => ApiError::Unavailable(e),
            EngineError::OutcomeUnknown(e) => ApiError::OutcomeUnknown(e),
            EngineError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Unavailable(e) => ApiError::Unavailable(e.into()),
            LedgerError::Internal(e) => ApiError::Internal(e),
        }
    }
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::UnknownSku(_) => "unknown_sku",
            ApiError::InsufficientStock(_) => "insufficient_stock",
            ApiError::PoolBelowHeld(_) => "pool_below_held",
            ApiError::LimitExceeded(_) => "per_customer_limit_exceeded",
            ApiError::SaleNotStarted(_) => "sale_not_started",
            ApiError::Expired => "reservation_expired",
            ApiError::Lost => "reservation_lost",
            ApiError::Released => "reservation_released",
            ApiError::Committed => "reservation_committed",
            ApiError::ReturnExceedsOrder(_) => "return_exceeds_order",
            ApiError::IdempotencyConflict(_) => "idempotency_conflict",
            ApiError::EventsGone(_) => "event_id_too_old",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::OutcomeUnknown(_) => "outcome_unknown",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "Validation failed",
            ApiError::MalformedJson(_) => "Malformed JSON",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound(_) => "Not found",
            ApiError::UnknownSku(_) => "Unknown SKU",
            ApiError::InsufficientStock(_) => "Insufficient stock",
            ApiError::PoolBelowHeld(_) => "Pool below what is held",
            ApiError::LimitExceeded(_) => "Per-customer limit exceeded",
            ApiError::SaleNotStarted(_) => "Sale not started",
            ApiError::Expired => "Reservation expired",
            ApiError::Lost => "Reservation lost",
            ApiError::Released => "Reservation released",
            ApiError::Committed => "Reservation committed",
            ApiError::ReturnExceedsOrder(_) => "Return exceeds order",
            ApiError::IdempotencyConflict(_) => "Idempotency conflict",
            ApiError::EventsGone(_) => "Event id too old",
            ApiError::PayloadTooLarge(_) => "Payload too large",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::OutcomeUnknown(_) => "Outcome unknown",
            ApiError::Internal(_) => "Internal server error",
        }
    }

    fn detail(&self) -> String {
        let n = |len: usize, one: &str, many: &str| {
            format!("{len} {}", if len == 1 { one } else { many })
        };
        match self {
            ApiError::Validation(e) => {
                format!("{} in the request", n(e.len(), "problem", "problems"))
            }
            ApiError::MalformedJson(m) => format!("the body is not valid JSON: {m}"),
            ApiError::Unauthorized => "send a valid API key as Authorization: Bearer <key>".into(),
            ApiError::Forbidden(role) => format!("this call needs a key with the {role} role"),
            ApiError::NotFound(what) => format!("no such {what}"),
            ApiError::UnknownSku(s) => {
                format!("{} never set up", n(s.len(), "SKU was", "SKUs were"))
            }
            ApiError::InsufficientStock(s) => format!("{} short", n(s.len(), "SKU is", "SKUs are")),
            ApiError::PoolBelowHeld(p) => format!(
                "{} would have fewer units than its holds took: release or commit them first, \
                 or take fewer units from it",
                n(p.len(), "pool", "pools")
            ),
            ApiError::LimitExceeded(s) => {
                format!("{} over the per-customer limit", n(s.len(), "SKU", "SKUs"))
            }
            ApiError::SaleNotStarted(s) => {
                format!("{} not on sale yet", n(s.len(), "SKU is", "SKUs are"))
            }
            ApiError::Expired => {
                "the reservation ran out of time and its units were released".into()
            }
            ApiError::Released => "the reservation was released".into(),
            ApiError::Lost => "Redis lost this reservation (or part of it) when it restarted or \
                failed over; its units went back to stock and nothing was sold: hold them again"
                .into(),
            ApiError::Committed => "the reservation was committed".into(),
            ApiError::ReturnExceedsOrder(l) => {
                format!(
                    "{} more than was committed and not yet returned",
                    n(l.len(), "line asks", "lines ask")
                )
            }
            ApiError::IdempotencyConflict(why) => (*why).into(),
            ApiError::EventsGone(why) => format!(
                "the Last-Event-ID is too old: {why}; reconnect without it and read the current \
                 counts"
            ),
            ApiError::PayloadTooLarge(limit) => format!("the body is larger than {limit} bytes"),
            ApiError::Unavailable(_) => {
                "a backing store is unreachable; nothing was changed, retry later".into()
            }
            ApiError::OutcomeUnknown(_) => "the change was sent to Redis and may or may not have \
                been made (Redis did not answer in time, or a sale over several partitions was \
                cut off midway and is being finished). Retrying with the same Idempotency-Key \
                is safe (it answers what was done, or does it now)"
                .into(),
            ApiError::Internal(_) => "an unexpected error occurred; it has been logged".into(),
        }
    }

    fn extra(&self) -> Option<(&'static str, Value)> {
        Some(match self {
            ApiError::Validation(errors) => ("errors", json!(errors)),
            ApiError::UnknownSku(skus) => ("skus", json!(skus)),
            ApiError::InsufficientStock(shortages) => ("shortages", json!(shortages)),
            ApiError::PoolBelowHeld(pools) => ("pools", json!(pools)),
            ApiError::LimitExceeded(limits) => ("limits", json!(limits)),
            ApiError::ReturnExceedsOrder(lines) => ("lines", json!(lines)),
            ApiError::SaleNotStarted(skus) => (
                "skus",
                skus.iter()
                    .map(|(sku, at)| json!({ "sku": sku, "starts_at": super::views::time(*at) }))
                    .collect(),
            ),
            _ => return None,
        })
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) | ApiError::UnknownSku(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InsufficientStock(_)
            | ApiError::PoolBelowHeld(_)
            | ApiError::LimitExceeded(_)
            | ApiError::SaleNotStarted(_)
            | ApiError::Released
            | ApiError::Committed
            | ApiError::ReturnExceedsOrder(_)
            | ApiError::IdempotencyConflict(_) => StatusCode::CONFLICT,
            ApiError::Expired | ApiError::Lost | ApiError::EventsGone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Internal(_) => tracing::error!(error = ?self, "request failed"),
            ApiError::Unavailable(_) | ApiError::OutcomeUnknown(_) => {
                tracing::warn!(error = ?self, "request failed")
            }
            _ => {}
        }
        let mut res = problem(
            self.status_code(),
            self.code(),
            self.title(),
            &self.detail(),
            self.extra(),
        );
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        if matches!(self, ApiError::Unauthorized) {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"stockhold\""),
            );
        }
        res
    }
}

/// A problem+json response.
pub fn problem(
    status: StatusCode,
    code: &str,
    title: &str,
    detail: &str,
    extra: Option<(&'static str, Value)>,
) -> HttpResponse {
    let body = ProblemBody {
        status: status.as_u16(),
        code,
        title,
        detail,
        extra,
    };
    HttpResponse::build(status)
        .content_type("application/problem+json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
}

/// A problem document's members, written in name order (as a JSON map
/// would), without building a map first: a sold-out SKU in a flash sale
/// answers thousands of these a second.
struct ProblemBody<'a> {
    status: u16,
    code: &'a str,
    title: &'a str,
    detail: &'a str,
    /// One more member, named between `detail` and `status`.
    extra: Option<(&'static str, Value)>,
}

impl serde::Serialize for ProblemBody<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(5 + usize::from(self.extra.is_some())))?;
        map.serialize_entry("code", self.code)?;
        map.serialize_entry("detail", self.detail)?;
        if let Some((name, value)) = &self.extra {
            debug_assert!("detail" < *name && *name < "status");
            map.serialize_entry(name, value)?;
        }
        map.serialize_entry("status", &self.status)?;
        map.serialize_entry("title", self.title)?;
        map.serialize_entry(
            "type",
            &format_args!("/problems/{}", self.code.replace('_', "-")),
        )?;
        map.end()
    }
}
