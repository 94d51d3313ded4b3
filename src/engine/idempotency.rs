//! Stored responses of requests sent with an `Idempotency-Key`: a repeat with
//! the same key and the same request gets the first response, a repeat with a
//! different request is refused. Records live 24 h; a record of a request
//! still in flight lives a minute, so a crashed request does not block its
//! key for long.

use super::connections::Connections;
use super::{EngineError, Keys};
use anyhow::anyhow;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

const DONE_TTL: Duration = Duration::from_secs(24 * 3600);
const IN_FLIGHT_TTL: Duration = Duration::from_secs(60);

/// A response as first sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` header.
    pub content_type: String,
    /// Body text.
    pub body: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    fingerprint: String,
    response: Option<StoredResponse>,
}

/// What `begin` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// First time: go ahead, then `complete` or `abandon`.
    Fresh,
    /// Seen before with the same request: send this again.
    Replay(StoredResponse),
    /// Seen before with a different request.
    Conflict,
    /// The same request is being handled right now.
    InFlight,
}

/// Idempotency records in Redis.
#[derive(Clone)]
pub struct IdempotencyStore {
    conns: Arc<Connections>,
    keys: Keys,
}

impl IdempotencyStore {
    pub(super) fn new(conns: Arc<Connections>, keys: Keys) -> Self {
        IdempotencyStore { conns, keys }
    }

    fn key(&self, caller: &str, key: &str) -> String {
        self.keys
            .idempotency(caller, &hex::encode(Sha256::digest(key.as_bytes())))
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, EngineError> {
        self.conns.get().await
    }

    /// Claims `key` for a request with `fingerprint`, or says what it was used for.
    pub async fn begin(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Begun, EngineError> {
        let redis_key = self.key(caller, key);
        let claim = serde_json::to_string(&Record {
            fingerprint: fingerprint.to_owned(),
            response: None,
        })
        .map_err(|e| EngineError::Internal(e.into()))?;
        let mut conn = self.conn().await?;
        for _ in 0..3 {
            let claimed: bool = redis::cmd("SET")
                .arg(&redis_key)
                .arg(&claim)
                .arg("NX")
                .arg("PX")
                .arg(IN_FLIGHT_TTL.as_millis() as u64)
                .query_async::<Option<String>>(&mut conn)
                .await?
                .is_some();
            if claimed {
                return Ok(Begun::Fresh);
            }
            let Some(stored): Option<String> = conn.get(&redis_key).await? else {
                continue; // expired between SET and GET: try to claim again
            };
            let record: Record =
                serde_json::from_str(&stored).map_err(|e| EngineError::Internal(e.into()))?;
            return Ok(match record.response {
                _ if record.fingerprint != fingerprint => Begun::Conflict,
                Some(response) => Begun::Replay(response),
                None => Begun::InFlight,
            });
        }
        Err(EngineError::Internal(anyhow!(
            "idempotency key kept vanishing"
        )))
    }

    /// Stores the response to send to every repeat.
    pub async fn complete(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &str,
        response: StoredResponse,
    ) -> Result<(), EngineError> {
        let record = serde_json::to_string(&Record {
            fingerprint: fingerprint.to_owned(),
            response: Some(response),
        })
        .map_err(|e| EngineError::Internal(e.into()))?;
        let mut conn = self.conn().await?;
        let _: () = conn
            .pset_ex(self.key(caller, key), record, DONE_TTL.as_millis() as u64)
            .await?;
        Ok(())
    }

    /// Frees `key` after a failure that changed nothing, so a retry runs again.
    pub async fn abandon(&self, caller: &str, key: &str) -> Result<(), EngineError> {
        let mut conn = self.conn().await?;
        let _: () = conn.del(self.key(caller, key)).await?;
        Ok(())
    }
}
