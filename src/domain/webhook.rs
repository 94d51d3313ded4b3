//! Webhook subscriptions: where events are delivered, which ones, and how
//! each request is signed (the Standard Webhooks specification:
//! `webhook-id`, `webhook-timestamp`, `webhook-signature` =
//! `v1,<base64 HMAC-SHA256 of "id.timestamp.body">` under the secret
//! `whsec_<base64 key>`).

use super::validation::Body;
use super::{EventKind, FieldError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::Sha256;

/// Longest URL a subscription may have.
pub const MAX_URL: usize = 2048;
/// Prefix of a Standard Webhooks secret.
const SECRET_PREFIX: &str = "whsec_";

/// `POST /v1/admin/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Where to POST each event (http or https).
    pub url: String,
    /// The event types it receives (empty: every type).
    pub types: Vec<EventKind>,
    /// Its signing secret (`whsec_…`); made up when not given.
    pub secret: Option<String>,
    /// What it is for.
    pub description: Option<String>,
}

impl WebhookRequest {
    /// Parses and checks a subscription.
    pub fn parse(body: &Value) -> Result<Self, Vec<FieldError>> {
        let mut b = Body::object(body, &["url", "types", "secret", "description"])?;
        let url = match b.get("url").map(|v| v.as_str()) {
            None => {
                b.fail("url", "is required");
                None
            }
            Some(None) => {
                b.fail("url", "must be a string");
                None
            }
            Some(Some(u)) => match check_url(u) {
                Ok(()) => Some(u.to_owned()),
                Err(m) => {
                    b.fail("url", m);
                    None
                }
            },
        };
        let mut types = Vec::new();
        match b.get("types") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item.as_str().map(str::parse::<EventKind>) {
                        Some(Ok(k)) if !types.contains(&k) => types.push(k),
                        Some(Ok(_)) => b.fail(format!("types[{i}]"), "is listed twice"),
                        Some(Err(m)) => b.fail(format!("types[{i}]"), m),
                        None => b.fail(format!("types[{i}]"), "must be an event type"),
                    }
                }
            }
            Some(_) => b.fail("types", "must be an array of event types"),
        }
        let secret = match b.get("secret").map(|v| v.as_str()) {
            None => None,
            Some(Some(s)) if secret_key(s).is_ok() => Some(s.to_owned()),
            Some(_) => {
                b.fail(
                    "secret",
                    "must be whsec_ followed by 24 to 64 bytes in base64 (leave it out to get one)",
                );
                None
            }
        };
        let description = b.text("description", 256);
        b.finish()?;
        Ok(WebhookRequest {
            url: url.unwrap_or_default(),
            types,
            secret,
            description,
        })
    }
}

fn check_url(u: &str) -> Result<(), String> {
    if u.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let parsed = url::Url::parse(u).map_err(|e| format!("must be an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("may not carry credentials (the signature authenticates each request)".into());
    }
    Ok(())
}

/// The key of a `whsec_…` secret.
fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let key = secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b| STANDARD.decode(b).ok())
        .ok_or_else(|| "not a whsec_ secret".to_owned())?;
    if (24..=64).contains(&key.len()) {
        Ok(key)
    } else {
        Err("a secret's key is 24 to 64 bytes".into())
    }
}

/// A new random secret.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The `webhook-signature` of `body` sent as message `id` at `timestamp`
/// (Unix seconds) under `secret`.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = secret_key(secret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A subscription as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Webhook {
    pub id: uuid::Uuid,
    pub url: String,
    /// Event types (empty: every type).
    pub types: Vec<String>,
    pub secret: String,
    pub description: Option<String>,
    /// `active` or `paused`.
    pub status: String,
    pub paused_reason: Option<String>,
    /// Where it stands in the events streams.
    pub position: String,
    /// Failed attempts in a row.
    pub failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Events delivered so far.
    pub delivered: i64,
    pub created_at: DateTime<Utc>,
}

impl Webhook {
    /// Whether it receives events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.types.is_empty() || self.types.iter().any(|t| t == kind.as_str())
    }
}

/// One attempt to deliver an event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt at this event, 2 for the next…
    pub attempt: i32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i32>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    pub duration_ms: i32,
    pub delivered: bool,
    pub at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification's reference
        // libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_subscription_is_checked_listing_every_problem() {
        let ok = WebhookRequest::parse(&json!({ "url": "https://shop.example/hooks",
            "types": ["sku.out_of_stock"] }))
        .unwrap();
        assert_eq!(ok.types, [EventKind::SkuOutOfStock]);
        let errors = WebhookRequest::parse(&json!({ "url": "ftp://x", "types": ["hold.made", 3],
            "secret": "nope", "extra": 1 }))
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["extra", "url", "types[0]", "types[1]", "secret"]);
        assert!(WebhookRequest::parse(&json!({})).is_err());
        assert!(WebhookRequest::parse(&json!({ "url": "http://user:pw@h/" })).is_err());
        assert!(secret_key(&new_secret()).is_ok());
    }
}
