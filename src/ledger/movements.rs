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
    /// Whether the ledger has the take and the give of transfer `id` of
    /// `sku` (the units left one bucket; they arrived in the other).
    pub async fn transfer_recorded(
        &self,
        sku: &str,
        id: &str,
    ) -> Result<(bool, bool), LedgerError> {
        Ok(sqlx::query_as(
            "SELECT coalesce(bool_or(delta < 0), false), coalesce(bool_or(delta > 0), false)
             FROM stock_movements WHERE sku = $1 AND ref = $2 AND kind = 'transfer'",
        )
        .bind(sku)
        .bind(id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Up to `limit` movements of `sku` older than `before`, newest first;
    /// `None` if the ledger does not know the SKU.
    pub async fn movements(
        &self,
        sku: &str,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Option<Vec<Movement>>, LedgerError> {
        let known: Option<(i32,)> = sqlx::query_as("SELECT bucket_span FROM skus WHERE sku = $1")
            .bind(sku)
            .fetch_optional(&self.pool)
            .await?;
        let Some((span,)) = known else {
            return Ok(None);
        };
        // A SKU spread over buckets: each movement says the on_hand of its
        // bucket, so the SKU's on_hand after it is the sum of its movements
        // up to it. Transfers between its buckets net to zero (their two
        // halves are recorded apart, by each bucket's drain) and are left
        // out of the sum and of the list.
        let query = if span > 1 {
            "SELECT id, at, kind, delta, on_hand_after, ref
             FROM (SELECT id, at, kind, delta, ref,
                          sum(delta) OVER (ORDER BY id)::bigint AS on_hand_after
                   FROM stock_movements WHERE sku = $1 AND kind <> 'transfer') m
             WHERE id < $2 ORDER BY id DESC LIMIT $3"
        } else {
            "SELECT id, at, kind, delta, on_hand_after, ref FROM stock_movements
             WHERE sku = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        };
        let rows = sqlx::query_as(query)
            .bind(sku)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(rows))
    }

    /// How many SKUs are set up (channel allocations not counted).
    pub async fn sku_count(&self) -> Result<i64, LedgerError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM skus WHERE strpos(sku, '@') = 0")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Up to `limit` SKUs whose name starts with `prefix`, after `after`, in
    /// byte order (the ledger knows a SKU once its set-up is recorded; a
    /// channel's allocation account, `sku@channel`, is not a SKU).
    pub async fn sku_names(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, LedgerError> {
        Ok(sqlx::query_scalar(
            r#"SELECT sku FROM skus
               WHERE starts_with(sku, $1) AND strpos(sku, '@') = 0
                 AND ($2::text IS NULL OR sku COLLATE "C" > $2)
               ORDER BY sku COLLATE "C" LIMIT $3"#,
        )
        .bind(prefix)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
