//! The client's one error type: the service's problem+json answers, parsed,
//! and the ways a call can fail before or after it.

use crate::types::{FieldError, LimitBreach, ReturnExcess, SaleStart, Shortage};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The stable `code` of every problem API.md lists.
pub mod codes {
    /// 422: `errors: [{field, message}]`, see [`crate::Error::field_errors`].
    pub const VALIDATION_FAILED: &str = "validation_failed";
    /// 400: the body is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// 401: missing or unknown API key.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: the key's role may not make this call.
    pub const FORBIDDEN: &str = "forbidden";
    /// 404: unknown reservation, order or SKU.
    pub const NOT_FOUND: &str = "not_found";
    /// 422: `skus: [..]`, see [`crate::Error::unknown_skus`].
    pub const UNKNOWN_SKU: &str = "unknown_sku";
    /// 409: `shortages: [..]`, see [`crate::Error::shortages`].
    pub const INSUFFICIENT_STOCK: &str = "insufficient_stock";
    /// 409: `limits: [..]`, see [`crate::Error::limits`].
    pub const PER_CUSTOMER_LIMIT_EXCEEDED: &str = "per_customer_limit_exceeded";
    /// 409: `skus: [{sku, starts_at}]`, see [`crate::Error::sale_not_started`].
    pub const SALE_NOT_STARTED: &str = "sale_not_started";
    /// 410: the reservation ran out of time.
    pub const RESERVATION_EXPIRED: &str = "reservation_expired";
    /// 409: the reservation was released.
    pub const RESERVATION_RELEASED: &str = "reservation_released";
    /// 409: the reservation was committed.
    pub const RESERVATION_COMMITTED: &str = "reservation_committed";
    /// 409: `lines: [..]`, see [`crate::Error::return_excess`].
    pub const RETURN_EXCEEDS_ORDER: &str = "return_exceeds_order";
    /// 409: the same Idempotency-Key with a different request.
    pub const IDEMPOTENCY_CONFLICT: &str = "idempotency_conflict";
    /// 413: the body is over 1 MiB.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// 503: Redis or Postgres unreachable; nothing was changed.
    pub const UNAVAILABLE: &str = "unavailable";
}

/// Everything a call can end in instead of success.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service refused the call with a problem+json body.
    #[error("{}", problem_summary(.status, .code, .detail, .body))]
    Problem {
        /// HTTP status.
        status: u16,
        /// The stable machine-readable code (see [`codes`]).
        code: String,
        /// Short human title.
        title: String,
        /// What happened, in words.
        detail: String,
        /// The whole body, extra members included.
        body: Value,
    },
    /// The call never got an answer: connection refused, timeout, a broken
    /// response. A mutation may or may not have been applied; repeat it with
    /// the same Idempotency-Key to be safe.
    #[error("transport error: {}", chain(.0))]
    Transport(#[from] reqwest::Error),
    /// An answer that is neither success nor problem+json (a proxy's error
    /// page, say), or a success status the endpoint never sends.
    #[error("unexpected answer: HTTP {status}: {body}")]
    Unexpected {
        /// HTTP status.
        status: u16,
        /// The body (cut to 500 characters) or what was wrong with it.
        body: String,
    },
    /// A success body that does not have the shape of API.md.
    #[error("cannot read the HTTP {status} answer: {source}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// Why it did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// The base URL given to [`crate::Client::new`] cannot be used.
    #[error("invalid service URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Longest body kept in [`Error::Unexpected`].
const MAX_UNEXPECTED_BODY: usize = 500;

impl Error {
    /// Builds the error for a non-2xx answer: a [`Error::Problem`] when the
    /// body is a JSON object with a `code`, else [`Error::Unexpected`].
    pub fn from_response(status: u16, body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) if value.get("code").and_then(Value::as_str).is_some() => {
                let text = |name: &str| {
                    value
                        .get(name)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                };
                Error::Problem {
                    status,
                    code: text("code"),
                    title: text("title"),
                    detail: text("detail"),
                    body: value,
                }
            }
            _ => {
                let text = String::from_utf8_lossy(body);
                let mut body: String = text.chars().take(MAX_UNEXPECTED_BODY).collect();
                if text.chars().count() > MAX_UNEXPECTED_BODY {
                    body.push('…');
                }
                Error::Unexpected { status, body }
            }
        }
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Problem { status, .. }
            | Error::Unexpected { status, .. }
            | Error::Decode { status, .. } => Some(*status),
            Error::Transport(e) => e.status().map(|s| s.as_u16()),
            Error::InvalidUrl { .. } => None,
        }
    }

    /// The problem's `code`, for [`Error::Problem`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Problem { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether this is a problem with `code` (see [`codes`]).
    pub fn is(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// The whole problem+json body, for [`Error::Problem`].
    pub fn problem_body(&self) -> Option<&Value> {
        match self {
            Error::Problem { body, .. } => Some(body),
            _ => None,
        }
    }

    /// Whether the same call may simply be sent again: nothing was changed
    /// (`503 unavailable`) or nobody knows (a transport error; send mutations
    /// again only with the same Idempotency-Key).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) => true,
            Error::Problem { status, .. } | Error::Unexpected { status, .. } => {
                matches!(status, 502..=504)
            }
            _ => false,
        }
    }

    /// Every short SKU of an `insufficient_stock`; empty for other errors.
    pub fn shortages(&self) -> Vec<Shortage> {
        self.members(codes::INSUFFICIENT_STOCK, "shortages")
    }

    /// Every problem of a `validation_failed`; empty for other errors.
    pub fn field_errors(&self) -> Vec<FieldError> {
        self.members(codes::VALIDATION_FAILED, "errors")
    }

    /// The SKUs of an `unknown_sku`; empty for other errors.
    pub fn unknown_skus(&self) -> Vec<String> {
        self.members(codes::UNKNOWN_SKU, "skus")
    }

    /// Every breach of a `per_customer_limit_exceeded`; empty for other errors.
    pub fn limits(&self) -> Vec<LimitBreach> {
        self.members(codes::PER_CUSTOMER_LIMIT_EXCEEDED, "limits")
    }

    /// The SKUs of a `sale_not_started` with their start; empty for other errors.
    pub fn sale_not_started(&self) -> Vec<SaleStart> {
        self.members(codes::SALE_NOT_STARTED, "skus")
    }

    /// The lines of a `return_exceeds_order`; empty for other errors.
    pub fn return_excess(&self) -> Vec<ReturnExcess> {
        self.members(codes::RETURN_EXCEEDS_ORDER, "lines")
    }

    /// The array member `name` of a problem with `code`, items that do not
    /// parse skipped (a newer service may add to them).
    fn members<T: DeserializeOwned>(&self, code: &str, name: &str) -> Vec<T> {
        if !self.is(code) {
            return Vec::new();
        }
        self.problem_body()
            .and_then(|b| b.get(name))
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| serde_json::from_value(i.clone()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One line saying what the problem was, with its extra members.
fn problem_summary(status: &u16, code: &str, detail: &str, body: &Value) -> String {
    let list = |name: &str, item: &dyn Fn(&Value) -> Option<String>| -> String {
        body.get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(item).collect::<Vec<_>>().join("; "))
            .unwrap_or_default()
    };
    let s = |v: &Value, k: &str| v.get(k).map_or(String::new(), unquote);
    let extra = match code {
        codes::VALIDATION_FAILED => list("errors", &|e| {
            Some(format!("{}: {}", s(e, "field"), s(e, "message")))
        }),
        codes::INSUFFICIENT_STOCK => list("shortages", &|e| {
            Some(format!(
                "{} wants {}, {} available",
                s(e, "sku"),
                s(e, "requested"),
                s(e, "available")
            ))
        }),
        codes::UNKNOWN_SKU => list("skus", &|e| Some(unquote(e))),
        codes::PER_CUSTOMER_LIMIT_EXCEEDED => list("limits", &|e| {
            Some(format!(
                "{} limit {}, already {}, wants {}",
                s(e, "sku"),
                s(e, "limit"),
                s(e, "already"),
                s(e, "requested")
            ))
        }),
        codes::SALE_NOT_STARTED => list("skus", &|e| {
            Some(format!("{} from {}", s(e, "sku"), s(e, "starts_at")))
        }),
        codes::RETURN_EXCEEDS_ORDER => list("lines", &|e| {
            Some(format!(
                "{} returnable {}, wants {}",
                s(e, "sku"),
                s(e, "returnable"),
                s(e, "requested")
            ))
        }),
        _ => String::new(),
    };
    if extra.is_empty() {
        format!("{code} ({status}): {detail}")
    } else {
        format!("{code} ({status}): {detail}: {extra}")
    }
}

/// A JSON scalar as text, strings without their quotes.
fn unquote(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An error and its causes, `: `-separated (reqwest hides the cause of a
/// refused connection in its source chain).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(status: u16, body: Value) -> Error {
        Error::from_response(status, body.to_string().as_bytes())
    }

    #[test]
    fn a_problem_body_becomes_a_problem_with_its_members() {
        let e = problem(
            409,
            json!({ "type": "/problems/insufficient-stock", "title": "Insufficient stock",
                    "status": 409, "code": "insufficient_stock", "detail": "2 SKUs are short",
                    "shortages": [ { "sku": "A", "requested": 3, "available": 1 },
                                   { "sku": "B", "requested": 2, "available": 0 } ] }),
        );
        let Error::Problem {
            status,
            ref code,
            ref title,
            ref detail,
            ..
        } = e
        else {
            panic!("not a problem: {e:?}");
        };
        assert_eq!(
            (status, code.as_str(), title.as_str(), detail.as_str()),
            (
                409,
                "insufficient_stock",
                "Insufficient stock",
                "2 SKUs are short"
            )
        );
        assert!(e.is(codes::INSUFFICIENT_STOCK));
        assert_eq!(e.status(), Some(409));
        assert_eq!(
            e.shortages(),
            [
                Shortage {
                    sku: "A".into(),
                    requested: 3,
                    available: 1
                },
                Shortage {
                    sku: "B".into(),
                    requested: 2,
                    available: 0
                }
            ]
        );
        assert!(e.field_errors().is_empty());
        assert_eq!(
            e.to_string(),
            "insufficient_stock (409): 2 SKUs are short: A wants 3, 1 available; B wants 2, 0 available"
        );
    }

    #[test]
    fn every_code_with_extra_members_has_its_accessor() {
        let validation = problem(
            422,
            json!({ "code": "validation_failed", "detail": "2 problems in the request",
                    "errors": [ { "field": "lines[0].qty", "message": "must be at least 1" },
                                { "field": "ttl_seconds", "message": "too long" } ] }),
        );
        assert_eq!(validation.field_errors().len(), 2);
        assert_eq!(validation.field_errors()[1].field, "ttl_seconds");

        let unknown = problem(422, json!({ "code": "unknown_sku", "skus": ["X", "Y"] }));
        assert_eq!(unknown.unknown_skus(), ["X", "Y"]);
        assert!(unknown.sale_not_started().is_empty());

        let limits = problem(
            409,
            json!({ "code": "per_customer_limit_exceeded",
                    "limits": [ { "sku": "S", "limit": 2, "already": 1, "requested": 2 } ] }),
        );
        assert_eq!(limits.limits()[0].already, 1);

        let sale = problem(
            409,
            json!({ "code": "sale_not_started",
                    "skus": [ { "sku": "C", "starts_at": "2026-12-12T00:00:00.000Z" } ] }),
        );
        assert_eq!(sale.sale_not_started()[0].sku, "C");
        assert!(sale.unknown_skus().is_empty());

        let excess = problem(
            409,
            json!({ "code": "return_exceeds_order",
                    "lines": [ { "sku": "A", "returnable": 1, "requested": 2 } ] }),
        );
        assert_eq!(excess.return_excess()[0].returnable, 1);
    }

    #[test]
    fn a_body_without_a_code_is_unexpected_and_cut_short() {
        let e = Error::from_response(502, b"<html>Bad gateway</html>");
        assert!(
            matches!(e, Error::Unexpected { status: 502, ref body } if body.contains("Bad gateway"))
        );
        assert!(e.is_retryable());
        assert_eq!(e.code(), None);

        let long = "x".repeat(2_000);
        let Error::Unexpected { body, .. } = Error::from_response(500, long.as_bytes()) else {
            panic!("not unexpected");
        };
        assert_eq!(body.chars().count(), MAX_UNEXPECTED_BODY + 1);

        let not_problem = problem(404, json!({ "error": "no" }));
        assert!(matches!(not_problem, Error::Unexpected { status: 404, .. }));
    }

    #[test]
    fn missing_members_read_as_empty() {
        let e = problem(409, json!({ "code": "insufficient_stock", "status": 409 }));
        assert!(e.shortages().is_empty());
        assert_eq!(e.to_string(), "insufficient_stock (409): ");
        let odd = problem(
            409,
            json!({ "code": "insufficient_stock", "shortages": [7, { "sku": "A", "requested": 1, "available": 0 }] }),
        );
        assert_eq!(odd.shortages().len(), 1);
    }

    #[test]
    fn only_unavailable_answers_are_retryable() {
        assert!(problem(503, json!({ "code": "unavailable" })).is_retryable());
        assert!(!problem(409, json!({ "code": "insufficient_stock" })).is_retryable());
        assert!(!problem(500, json!({ "code": "internal_error" })).is_retryable());
    }
}
