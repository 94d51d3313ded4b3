//! Returns and adjustments as the ledger knows them.

use super::{Ledger, LedgerError};
use crate::domain::{OrderId, ReturnExcess, ReturnRequest, Sku};
use anyhow::anyhow;
use std::collections::HashMap;
use std::time::Duration;

/// What recording a return did.
#[derive(Debug, Clone)]
pub enum ReturnRecorded {
    /// Recorded now.
    Recorded,
    /// Recorded before under this id; its lines, and whether its restock
    /// has not reached the ledger yet.
    Before {
        /// The lines first recorded.
        lines: Vec<(Sku, i64)>,
        /// Restock asked for and not yet persisted.
        restock_pending: bool,
    },
    /// Lines beyond what may be returned; nothing recorded.
    Exceeds(Vec<ReturnExcess>),
    /// The ledger has no such order.
    OrderNotFound,
    /// The return id belongs to another return (another order, other
    /// lines or another restock choice).
    IdReused,
}

/// A restocking return whose units have not reached the ledger.
#[derive(Debug, Clone)]
pub struct PendingRestock {
    /// The return.
    pub return_id: String,
    /// Its order.
    pub order_id: OrderId,
    /// Units to put back.
    pub lines: Vec<(Sku, i64)>,
}

impl Ledger {
    /// Records a return against an order, capped per line at committed minus
    /// returned, under a lock on the order's row; idempotent on return_id.
    pub async fn record_return(
        &self,
        order_id: &OrderId,
        req: &ReturnRequest,
    ) -> Result<ReturnRecorded, LedgerError> {
        let mut tx = self.pool.begin().await?;
        type OrderRow = (Vec<String>, Vec<i64>, Vec<i64>, Option<String>);
        let order: Option<OrderRow> = sqlx::query_as(
            "SELECT line_skus, line_qtys, line_returned, channel FROM orders
             WHERE order_id = $1 FOR UPDATE",
        )
        .bind(order_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((skus, qtys, mut returned, channel)) =
            order.filter(|(skus, _, _, _)| !skus.is_empty())
        else {
            return Ok(ReturnRecorded::OrderNotFound);
        };
        let before: Option<(String, bool, bool)> = sqlx::query_as(
            "SELECT order_id, restock, restock AND restocked_at IS NULL FROM returns WHERE return_id = $1",
        )
        .bind(&req.return_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((other_order, restock, restock_pending)) = before {
            let mut lines = self.return_lines(&req.return_id).await?;
            let mut asked = req.lines.clone();
            lines.sort();
            asked.sort();
            if other_order != order_id.as_str() || restock != req.restock || lines != asked {
                return Ok(ReturnRecorded::IdReused);
            }
            return Ok(ReturnRecorded::Before {
                lines,
                restock_pending,
            });
        }

        // A basket names each SKU once.
        let line_of: HashMap<&str, usize> = skus
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i))
            .collect();
        let returnable = |sku: &str| line_of.get(sku).map_or(0, |&i| qtys[i] - returned[i]);
        let excess: Vec<ReturnExcess> = req
            .lines
            .iter()
            .filter_map(|(sku, qty)| {
                let returnable = returnable(sku.as_str());
                (*qty > returnable).then(|| ReturnExcess {
                    sku: sku.clone(),
                    returnable,
                    requested: *qty,
                })
            })
            .collect();
        if !excess.is_empty() {
            return Ok(ReturnRecorded::Exceeds(excess));
        }

        let inserted = sqlx::query(
            "INSERT INTO returns (return_id, order_id, restock, at) VALUES ($1, $2, $3, now())
             ON CONFLICT DO NOTHING",
        )
        .bind(&req.return_id)
        .bind(order_id.as_str())
        .bind(req.restock)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(ReturnRecorded::IdReused);
        }
        let back_skus: Vec<&str> = req.lines.iter().map(|(s, _)| s.as_str()).collect();
        let back_qtys: Vec<i64> = req.lines.iter().map(|(_, q)| *q).collect();
        // Units sold from the allocation of the order's channel go back to
        // it first: what the order's sale took from it, less what earlier
        // returns of the order gave back to it.
        // (Units not restocked go back to no pool.)
        let channel = channel.filter(|c| req.restock && Sku::parse(c).is_ok());
        let pooled: Vec<i64> = match channel.as_deref() {
            None => vec![0; back_skus.len()],
            Some(channel) => {
                let accounts: Vec<String> =
                    back_skus.iter().map(|s| format!("{s}@{channel}")).collect();
                let left: HashMap<String, i64> = sqlx::query_as(
                    "SELECT split_part(m.sku, '@', 1), -sum(m.delta)::bigint - coalesce(
                            (SELECT sum(l.pooled) FROM return_lines l JOIN returns r USING (return_id)
                             WHERE r.order_id = $2 AND r.restock
                               AND l.sku = split_part(m.sku, '@', 1)), 0)::bigint
                     FROM stock_movements m
                     WHERE m.sku = ANY($1) AND m.ref = $2 AND m.kind = 'commit'
                       AND strpos(m.sku, '@') > 0
                     GROUP BY m.sku",
                )
                .bind(&accounts)
                .bind(order_id.as_str())
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .collect();
                req.lines
                    .iter()
                    .map(|(s, q)| left.get(s.as_str()).copied().unwrap_or(0).clamp(0, *q))
                    .collect()
            }
        };
        sqlx::query(
            "INSERT INTO return_lines (return_id, sku, qty, pooled) SELECT $1, l.sku, l.qty, l.pooled
             FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS l(sku, qty, pooled)",
        )
        .bind(&req.return_id)
        .bind(&back_skus)
        .bind(&back_qtys)
        .bind(&pooled)
        .execute(&mut *tx)
        .await?;
        for (sku, qty) in &req.lines {
            if let Some(&i) = line_of.get(sku.as_str()) {
                returned[i] += qty;
            }
        }
        sqlx::query("UPDATE orders SET line_returned = $2 WHERE order_id = $1")
            .bind(order_id.as_str())
            .bind(&returned)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ReturnRecorded::Recorded)
    }

    async fn return_lines(&self, return_id: &str) -> Result<Vec<(Sku, i64)>, LedgerError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT sku, qty FROM return_lines WHERE return_id = $1 ORDER BY sku")
                .bind(return_id)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(s, q)| {
                Ok((
                    Sku::parse(&s).map_err(|m| LedgerError::Internal(anyhow!(m)))?,
                    q,
                ))
            })
            .collect()
    }

    /// The units of a return's lines that go back to the allocation of its
    /// order's channel: (sku, channel, units) of each line with some.
    pub async fn return_pools(
        &self,
        return_id: &str,
    ) -> Result<Vec<(Sku, String, i64)>, LedgerError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT l.sku, o.channel, l.pooled
             FROM return_lines l JOIN returns r USING (return_id) JOIN orders o USING (order_id)
             WHERE l.return_id = $1 AND l.pooled > 0 AND o.channel IS NOT NULL
             ORDER BY l.sku",
        )
        .bind(return_id)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(s, c, n)| {
                Ok((
                    Sku::parse(&s).map_err(|m| LedgerError::Internal(anyhow!(m)))?,
                    c,
                    n,
                ))
            })
            .collect()
    }

    /// Restocking returns recorded more than `age` ago whose units have not
    /// reached the ledger (a crash between recording and restocking).
    pub async fn pending_restocks(
        &self,
        age: Duration,
    ) -> Result<Vec<PendingRestock>, LedgerError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT return_id, order_id FROM returns
             WHERE restock AND restocked_at IS NULL AND at < now() - make_interval(secs => $1)
             ORDER BY at LIMIT 100",
        )
        .bind(age.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let mut pending = Vec::with_capacity(rows.len());
        for (return_id, order_id) in rows {
            let lines = self.return_lines(&return_id).await?;
            let order_id =
                OrderId::parse(&order_id).map_err(|m| LedgerError::Internal(anyhow!(m)))?;
            pending.push(PendingRestock {
                return_id,
                order_id,
                lines,
            });
        }
        Ok(pending)
    }

    /// The SKU and delta an adjustment id was applied with, if it was.
    pub async fn adjustment(
        &self,
        adjustment_id: &str,
    ) -> Result<Option<(String, i64)>, LedgerError> {
        Ok(
            sqlx::query_as("SELECT sku, delta FROM adjustments WHERE adjustment_id = $1")
                .bind(adjustment_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
