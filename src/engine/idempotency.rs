//! Stored responses of requests sent with an `Idempotency-Key`: a repeat with
//! the same key and the same request gets the first response, a repeat with a
//! different request is refused. Records live 24 h. While a request is in
//! flight its key is claimed for a few seconds at a time, renewed by the
//! request as it runs: a claim of a request whose instance died, or whose
//! release could not reach Redis, blocks its key for seconds, not a minute.

use super::recovery::LeaseOp;
use super::{Engine, EngineError};
use anyhow::anyhow;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

const DONE_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a claim lasts unless its request renews it.
pub const IN_FLIGHT_TTL: Duration = Duration::from_secs(5);
/// How often a request in flight renews its claim.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

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
    /// Makes each claim's value its own, so only its request releases it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claim: Option<String>,
}

/// A key claimed by one request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    key: String,
    value: String,
}

/// What `begin` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// First time: go ahead (renewing the claim), then `complete` or `abandon`.
    Fresh(Claim),
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
    engine: Engine,
}

impl IdempotencyStore {
    pub(super) fn new(engine: Engine) -> Self {
        IdempotencyStore { engine }
    }

    fn key(&self, caller: &str, key: &str) -> String {
        self.engine
            .keys
            .idempotency(caller, &hex::encode(Sha256::digest(key.as_bytes())))
    }

    /// Claims `key` for a request with `fingerprint`, or says what it was used for.
    pub async fn begin(
        &self,
        caller: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Begun, EngineError> {
        let redis_key = self.key(caller, key);
        let value = serde_json::to_string(&Record {
            fingerprint: fingerprint.to_owned(),
            response: None,
            claim: Some(uuid::Uuid::new_v4().simple().to_string()),
        })
        .map_err(|e| EngineError::Internal(e.into()))?;
        let claim = Claim {
            key: redis_key.clone(),
            value,
        };
        for _ in 0..3 {
            let (k, v) = (redis_key.clone(), claim.value.clone());
            let claimed = self
                .engine
                .run(|mut conn| async move {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(v)
                        .arg("NX")
                        .arg("PX")
                        .arg(IN_FLIGHT_TTL.as_millis() as u64)
                        .query_async::<Option<String>>(&mut conn)
                        .await
                })
                .await;
            match claimed {
                Ok(Some(_)) => return Ok(Begun::Fresh(claim)),
                Ok(None) => {}
                Err(e) => {
                    // The claim may still land: take it back once it has.
                    self.clean_up(claim);
                    return Err(e);
                }
            }
            let k = redis_key.clone();
            let stored: Option<String> = self
                .engine
                .run(
                    |mut conn| async move { redis::cmd("GET").arg(k).query_async(&mut conn).await },
                )
                .await?;
            let Some(stored) = stored else {
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

    /// Keeps a claim alive while its request runs; false if it is no longer
    /// this request's (it ran out, and a retry took the key).
    pub async fn renew(&self, claim: &Claim) -> Result<bool, EngineError> {
        self.engine
            .lease_call(
                claim.key.clone(),
                LeaseOp::Renew,
                &claim.value,
                IN_FLIGHT_TTL,
            )
            .await
    }

    /// Stores the response to send to every repeat.
    pub async fn complete(
        &self,
        claim: &Claim,
        fingerprint: &str,
        response: StoredResponse,
    ) -> Result<(), EngineError> {
        let record = serde_json::to_string(&Record {
            fingerprint: fingerprint.to_owned(),
            response: Some(response),
            claim: None,
        })
        .map_err(|e| EngineError::Internal(e.into()))?;
        let key = claim.key.clone();
        self.engine
            .run(|mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(record)
                    .arg("PX")
                    .arg(DONE_TTL.as_millis() as u64)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await
    }

    /// Frees the key after a failure, so a retry runs again. If Redis cannot
    /// be reached now, it is tried again in the background for as long as
    /// the claim could last.
    pub async fn abandon(&self, claim: Claim) {
        let released = self
            .engine
            .lease_call(
                claim.key.clone(),
                LeaseOp::Release,
                &claim.value,
                Duration::ZERO,
            )
            .await;
        if released.is_err() {
            self.clean_up(claim);
        }
    }

    /// Releases `claim` in the background once Redis answers: a claim sent
    /// to a Redis that did not answer may land later (after a pause, say).
    fn clean_up(&self, claim: Claim) {
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + IN_FLIGHT_TTL;
            let mut answered = 0;
            let mut attempt = 0;
            while tokio::time::Instant::now() < deadline && answered < 3 {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                attempt += 1;
                let release = engine.lease_call(
                    claim.key.clone(),
                    LeaseOp::Release,
                    &claim.value,
                    Duration::ZERO,
                );
                match release.await {
                    Ok(true) => return,
                    Ok(false) => answered += 1,
                    Err(_) => {}
                }
            }
        });
    }
}
