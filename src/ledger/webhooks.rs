//! Webhook subscriptions and their delivery records.

use super::{Ledger, LedgerError};
use crate::domain::{Delivery, Webhook, WebhookRequest};
use chrono::{DateTime, Utc};
use std::time::Duration;
use uuid::Uuid;

const COLUMNS: &str = "id, url, types, secret, description, status, paused_reason, position, \
                       failures, failing_since, next_attempt_at, delivered, created_at";

/// An attempt to record.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    pub status: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
    pub delivered: bool,
}

/// Where a subscription's delivery stands after a step.
#[derive(Debug, Clone)]
pub struct Progress {
    pub position: String,
    pub failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Events delivered in this step.
    pub delivered: i64,
    /// Paused, and why.
    pub paused: Option<String>,
}

impl Ledger {
    /// Stores a new subscription starting at `position`.
    pub async fn create_webhook(
        &self,
        req: &WebhookRequest,
        secret: &str,
        position: &str,
    ) -> Result<Webhook, LedgerError> {
        let types: Vec<String> = req.types.iter().map(|k| k.as_str().to_owned()).collect();
        Ok(sqlx::query_as(&format!(
            "INSERT INTO webhooks (id, url, types, secret, description, position)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(&req.url)
        .bind(&types)
        .bind(secret)
        .bind(&req.description)
        .bind(position)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every subscription, oldest first.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, LedgerError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks ORDER BY id"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// One subscription.
    pub async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>, LedgerError> {
        Ok(
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM webhooks WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Removes a subscription (and its delivery records); false if unknown.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<bool, LedgerError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Makes a paused subscription active again, its next attempt now.
    pub async fn resume_webhook(&self, id: Uuid) -> Result<Option<Webhook>, LedgerError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE webhooks SET status = 'active', paused_reason = NULL, failures = 0,
                 failing_since = NULL, next_attempt_at = NULL
             WHERE id = $1 RETURNING {COLUMNS}"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Active subscriptions nobody holds the lease of (or `owner` does).
    pub async fn webhooks_to_deliver(&self, owner: &str) -> Result<Vec<Uuid>, LedgerError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM webhooks WHERE status = 'active'
               AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until < now())",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Takes (or renews) the lease of an active subscription for `lease`;
    /// the subscription as it is, or None if another instance holds it, it
    /// is paused or gone.
    pub async fn claim_webhook(
        &self,
        id: Uuid,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<Webhook>, LedgerError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE webhooks SET lease_owner = $2,
                 lease_until = now() + make_interval(secs => $3)
             WHERE id = $1 AND status = 'active'
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until < now())
             RETURNING {COLUMNS}"
        ))
        .bind(id)
        .bind(owner)
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Lets go of a subscription's lease.
    pub async fn release_webhook(&self, id: Uuid, owner: &str) -> Result<(), LedgerError> {
        sqlx::query(
            "UPDATE webhooks SET lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a step of `owner`'s delivery: the attempts and where it
    /// stands, in one transaction; false (nothing recorded) if `owner` no
    /// longer holds the lease or the subscription is gone.
    pub async fn save_webhook_progress(
        &self,
        id: Uuid,
        owner: &str,
        progress: &Progress,
        deliveries: &[NewDelivery],
    ) -> Result<bool, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE webhooks SET position = $3, failures = $4, failing_since = $5,
                 next_attempt_at = $6, delivered = delivered + $7,
                 status = CASE WHEN $8::text IS NULL THEN status ELSE 'paused' END,
                 paused_reason = COALESCE($8, paused_reason)
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(owner)
        .bind(&progress.position)
        .bind(progress.failures)
        .bind(progress.failing_since)
        .bind(progress.next_attempt_at)
        .bind(progress.delivered)
        .bind(&progress.paused)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
        if !deliveries.is_empty() {
            let col = |f: fn(&NewDelivery) -> String| deliveries.iter().map(f).collect::<Vec<_>>();
            sqlx::query(
                "INSERT INTO webhook_deliveries
                     (webhook_id, event_id, event_type, attempt, status, error, duration_ms, delivered)
                 SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int[], $5::int[],
                                          $6::text[], $7::int[], $8::bool[])",
            )
            .bind(id)
            .bind(col(|d| d.event_id.clone()))
            .bind(col(|d| d.event_type.clone()))
            .bind(deliveries.iter().map(|d| d.attempt).collect::<Vec<_>>())
            .bind(deliveries.iter().map(|d| d.status).collect::<Vec<_>>())
            .bind(deliveries.iter().map(|d| d.error.clone()).collect::<Vec<_>>())
            .bind(deliveries.iter().map(|d| d.duration_ms).collect::<Vec<_>>())
            .bind(deliveries.iter().map(|d| d.delivered).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// A subscription's delivery attempts, newest first, before `before`.
    pub async fn webhook_deliveries(
        &self,
        id: Uuid,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Delivery>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT id, event_id, event_type, attempt, status, error, duration_ms, delivered, at
             FROM webhook_deliveries
             WHERE webhook_id = $1 AND ($2::bigint IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Drops delivery records older than `keep`.
    pub async fn trim_webhook_deliveries(&self, keep: Duration) -> Result<u64, LedgerError> {
        let done = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE at < now() - make_interval(secs => $1)",
        )
        .bind(keep.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
