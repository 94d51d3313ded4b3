//! What the ledger says the live counts must be built from: every SKU's
//! persisted `on_hand` and settings, read in one snapshot together with the
//! outbox watermark and the entries applied after it.

use super::{Ledger, LedgerError};
use crate::domain::{Partition, StreamId};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

/// One SKU as persisted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SkuRecord {
    /// The SKU.
    pub sku: String,
    /// `on_hand` after every recorded outbox entry.
    pub on_hand: i64,
    /// Settings as last persisted.
    pub backorder_limit: i64,
    /// Per-customer limit, if any.
    pub per_customer_limit: Option<i64>,
    /// Sale start, if any.
    pub sale_starts_at: Option<DateTime<Utc>>,
    /// Partitions its stock is spread over (1: its own only).
    pub buckets: i32,
    /// The most partitions it was ever spread over.
    pub bucket_span: i32,
    /// Units no reservation may hold.
    pub safety_stock: i64,
    /// The channels with an allocation (each an account `sku@channel` of
    /// its own, with a record of its own).
    pub allocations: Vec<String>,
    /// Its low-stock threshold, if any.
    pub low_stock: Option<i64>,
    /// Which of its buckets this record is of (its on_hand that bucket's
    /// share); 0 as read, for its own partition.
    #[sqlx(skip)]
    pub bucket: u16,
}

impl SkuRecord {
    /// A record of `sku` (or of an allocation's account) with `on_hand`
    /// units and no settings: its own partition's, not spread.
    pub fn plain(sku: &str, on_hand: i64) -> SkuRecord {
        SkuRecord {
            sku: sku.to_owned(),
            on_hand,
            backorder_limit: 0,
            per_customer_limit: None,
            sale_starts_at: None,
            buckets: 1,
            bucket_span: 1,
            safety_stock: 0,
            allocations: Vec::new(),
            low_stock: None,
            bucket: 0,
        }
    }
}

/// A consistent read of the ledger.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Per partition: every outbox entry up to here is applied (a
    /// partition not named has none applied).
    pub watermarks: HashMap<Partition, StreamId>,
    /// Entries after their partition's watermark applied already (out of
    /// order).
    pub applied_after: HashSet<(Partition, StreamId)>,
    /// The SKUs asked for (all when none were named), in SKU order.
    pub skus: Vec<SkuRecord>,
    /// Of SKUs spread over buckets: the sum of their movements made in each
    /// partition (each bucket's share of on_hand, as recorded).
    pub shares: HashMap<(String, Partition), i64>,
}

/// Units a customer bought of a SKU with a per-customer limit.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Bought {
    /// The customer.
    pub customer_id: String,
    /// The SKU.
    pub sku: String,
    /// Units committed.
    pub qty: i64,
    /// The SKU's buckets (the customer's count lives in one of them).
    pub buckets: i32,
}

impl Ledger {
    /// Reads the SKUs (`only` those, when given), the watermark and the
    /// entries applied after it, all in one repeatable-read snapshot.
    /// `spread` names SKUs spread over buckets that the ledger may not
    /// know as such yet (Redis knows first): their shares are read too.
    pub async fn snapshot(
        &self,
        only: Option<&[String]>,
        spread: &[String],
    ) -> Result<Snapshot, LedgerError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let watermarks: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT partition, stream_ms, stream_seq FROM outbox_watermark")
                .fetch_all(&mut *tx)
                .await?;
        let applied: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT a.partition, a.stream_ms, a.stream_seq
             FROM outbox_applied a LEFT JOIN outbox_watermark w USING (partition)
             WHERE (a.stream_ms, a.stream_seq)
                   > (coalesce(w.stream_ms, 0), coalesce(w.stream_seq, 0))",
        )
        .fetch_all(&mut *tx)
        .await?;
        // The view sku_stock: skus.on_hand covers the entries up to each
        // partition's watermark; entries after it that are recorded already
        // (commits persist their own) add what their claims say they changed.
        // A SKU named comes with the accounts of its allocations (looked up
        // by name: the primary key serves both).
        let named: Option<Vec<String>> = match only {
            None => None,
            Some(names) => Some(
                sqlx::query_scalar(
                    "SELECT s.sku FROM skus s WHERE s.sku = ANY($1)
                     UNION ALL
                     SELECT s.sku || '@' || c FROM skus s, unnest(s.allocations) c
                     WHERE s.sku = ANY($1)",
                )
                .bind(names)
                .fetch_all(&mut *tx)
                .await?,
            ),
        };
        let query = "SELECT s.sku, t.on_hand, s.backorder_limit, s.per_customer_limit,
                            s.sale_starts_at, s.buckets, s.bucket_span, s.safety_stock,
                            s.allocations, s.low_stock
                     FROM skus s JOIN sku_stock t USING (sku)
                     WHERE $1::text[] IS NULL OR s.sku = ANY($1)
                     ORDER BY s.sku";
        let skus: Vec<SkuRecord> = sqlx::query_as(query)
            .bind(named.as_deref())
            .fetch_all(&mut *tx)
            .await?;
        // Spread SKUs are few; each share is the sum of all the SKU's
        // movements in that partition.
        let shares: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT m.sku, m.outbox_partition, sum(m.delta)::bigint
             FROM skus s JOIN stock_movements m USING (sku)
             WHERE (s.bucket_span > 1 OR s.sku = ANY($2))
               AND ($1::text[] IS NULL OR s.sku = ANY($1))
             GROUP BY m.sku, m.outbox_partition",
        )
        .bind(only)
        .bind(spread)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // Rows of partitions outside the current layout (none, unless the
        // layout changed without the offline step) cannot be followed.
        let known = |name: &str| Partition::parse(name);
        Ok(Snapshot {
            watermarks: watermarks
                .into_iter()
                .filter_map(|(p, ms, seq)| Some((known(&p)?, StreamId { ms, seq })))
                .collect(),
            applied_after: applied
                .into_iter()
                .filter_map(|(p, ms, seq)| Some((known(&p)?, StreamId { ms, seq })))
                .collect(),
            skus,
            shares: shares
                .into_iter()
                .filter_map(|(sku, p, units)| Some(((sku, known(&p)?), units)))
                .collect(),
        })
    }

    /// Units bought per customer of every SKU that has a per-customer limit.
    pub async fn bought_of_limited_skus(&self) -> Result<Vec<Bought>, LedgerError> {
        Ok(sqlx::query_as(
            "SELECT o.customer_id, l.sku, sum(l.qty)::bigint AS qty, s.buckets
             FROM orders o
             CROSS JOIN LATERAL unnest(o.line_skus, o.line_qtys) AS l(sku, qty)
             JOIN skus s ON s.sku = l.sku
             WHERE o.customer_id IS NOT NULL AND s.per_customer_limit IS NOT NULL
             GROUP BY o.customer_id, l.sku, s.buckets",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records repairs: a `repair` ledger row per SKU, with delta 0 (the
    /// ledger was right; the live counts were set to match it) and a
    /// reference saying what the live counts were.
    pub async fn record_repairs(
        &self,
        repairs: &[(String, i64, String)],
    ) -> Result<(), LedgerError> {
        if repairs.is_empty() {
            return Ok(());
        }
        let skus: Vec<&str> = repairs.iter().map(|r| r.0.as_str()).collect();
        let after: Vec<i64> = repairs.iter().map(|r| r.1).collect();
        let refs: Vec<&str> = repairs.iter().map(|r| r.2.as_str()).collect();
        sqlx::query(
            "INSERT INTO stock_movements (sku, at, kind, delta, on_hand_after, ref)
             SELECT r.sku, now(), 'repair', 0, r.after, r.ref
             FROM unnest($1::text[], $2::bigint[], $3::text[]) AS r(sku, after, ref)",
        )
        .bind(&skus)
        .bind(&after)
        .bind(&refs)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
