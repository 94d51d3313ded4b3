//! Request bodies: at most 1 MiB, parsed as JSON, with a 413 or 400
//! problem+json answer when they are too large or not JSON.

use super::error::ApiError;
use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;

/// Largest request body accepted (API.md: 1 MiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Reads a whole body, refusing it as soon as it passes the limit.
pub async fn read_limited(req: &HttpRequest, payload: &mut Payload) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::MalformedJson(format!("the body could not be read: {e}")))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A JSON body; `None` when the request had no body at all.
pub struct JsonBody(pub Option<Value>);

impl JsonBody {
    /// The body, which this call requires.
    pub fn required(self) -> Result<Value, ApiError> {
        self.0
            .ok_or_else(|| ApiError::MalformedJson("the body is empty; send a JSON object".into()))
    }

    /// The body, an empty object when there was none (or it was `null`).
    pub fn or_empty_object(self) -> Value {
        match self.0 {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v) => v,
        }
    }
}

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let bytes = read_limited(&req, &mut payload).await?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(JsonBody(None));
            }
            serde_json::from_slice(&bytes)
                .map(|v| JsonBody(Some(v)))
                .map_err(|e| ApiError::MalformedJson(e.to_string()))
        })
    }
}
