//! Reading a SKU's append-only history.

use super::{Ledger, LedgerError};
use chrono::{DateTime, Utc};

/// One row of a SKU's ledger.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Movement {
    /// Row id; also the paging cursor.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// created, adjustment, commit, return or repair.
    pub kind: String,
    /// Change of on_hand.
    pub delta: i64,
    /// on_hand right after.
    pub on_hand_after: i64,
    /// What caused it (order id, adjustment id, …).
    #[sqlx(rename = "ref")]
    pub reference: String,
}

impl Ledger {
    /// Up to `limit` movements of `sku` older than `before`, newest first;
    /// `None` if the ledger does not know the SKU.
    pub async fn movements(
        &self,
        sku: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Option<Vec<Movement>>, LedgerError> {
        let known: Option<(String,)> = sqlx::query_as("SELECT sku FROM skus WHERE sku = $1")
            .bind(sku)
            .fetch_optional(&self.pool)
            .await?;
        if known.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query_as(
            "SELECT id, at, kind, delta, on_hand_after, ref FROM stock_movements
             WHERE sku = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(sku)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(rows))
    }
}
