//! The Postgres ledger: SKUs with their persisted `on_hand`, append-only stock
//! movements, orders and their lines, and the outbox bookkeeping. Every write
//! is an outbox entry recorded at most once (`outbox_applied`), so recording
//! the same entries again — a retry, a second instance — changes nothing.

mod apply;
mod copy;
mod group_commit;
mod movements;
mod orders;
mod returns;
mod snapshot;
mod webhooks;

pub use group_commit::GroupCommit;
pub use movements::Movement;
pub use returns::{PendingRestock, ReturnRecorded};
pub use snapshot::{Bought, SkuRecord, Snapshot};
pub use webhooks::{NewDelivery, Progress};

use crate::configuration::DatabaseSettings;
use crate::domain::{Partition, StreamId};
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;

/// Why a ledger call failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Postgres could not be reached or is shutting down.
    #[error("postgres is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else.
    #[error("ledger failure")]
    Internal(#[source] anyhow::Error),
}

impl From<sqlx::Error> for LedgerError {
    fn from(e: sqlx::Error) -> Self {
        let unreachable = match &e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P0x: shutting down / starting.
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
            _ => false,
        };
        if unreachable {
            LedgerError::Unavailable(e)
        } else {
            LedgerError::Internal(e.into())
        }
    }
}

impl From<anyhow::Error> for LedgerError {
    fn from(e: anyhow::Error) -> Self {
        LedgerError::Internal(e)
    }
}

/// The Postgres side of stockhold.
#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
}

impl Ledger {
    /// A ledger on the database of `settings`; connects lazily.
    pub fn new(settings: &DatabaseSettings) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(&settings.url)
            .with_context(|| "parsing database.url")?
            .application_name("stockhold");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
            .connect_lazy_with(options);
        Ok(Ledger { pool })
    }

    /// Applies the migrations in `migrations/`.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        sqlx::migrate!("./migrations")
            .run(&self.pool)
            .await
            .context("applying migrations")
    }

    /// Answers when Postgres does.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Every outbox entry of partition `p` up to this one is applied.
    pub async fn watermark(&self, p: Partition) -> Result<StreamId, LedgerError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT stream_ms, stream_seq FROM outbox_watermark WHERE partition = $1",
        )
        .bind(p.name())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|(ms, seq)| StreamId { ms, seq })
            .unwrap_or_default())
    }

    /// The outbox entries of partition `p` after `after` and up to
    /// `through` that are applied already (a commit records its own entry
    /// before the drain passes it).
    pub async fn applied_between(
        &self,
        p: Partition,
        after: StreamId,
        through: StreamId,
    ) -> Result<std::collections::HashSet<StreamId>, LedgerError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT stream_ms, stream_seq FROM outbox_applied
             WHERE partition = $1
               AND (stream_ms, stream_seq) > ($2, $3)
               AND (stream_ms, stream_seq) <= ($4, $5)",
        )
        .bind(p.name())
        .bind(after.ms)
        .bind(after.seq)
        .bind(through.ms)
        .bind(through.seq)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(ms, seq)| StreamId { ms, seq })
            .collect())
    }

    /// The pool, for tests and tools that inspect the ledger.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
