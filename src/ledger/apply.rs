//! Recording outbox entries: each at most once, many in one transaction, with
//! a handful of set-based statements however many entries and lines.
//!
//! Two writers share this code. A commit records its own entry (batched
//! with the commits made at the same moment, see `service::Persister`)
//! before it answers: inserts only, no row of `skus` is touched, so commits
//! of one hot SKU never queue on a row lock. The outbox drain records the
//! entries after the watermark that are not recorded yet and is the only
//! writer of `skus.on_hand`: it adds the movements of the entries it moves
//! the watermark over. So `skus.on_hand` is always the sum of the movements
//! of entries up to the watermark, and the ledger's on_hand is that plus the
//! movements after it (see `snapshot`).

use super::{Ledger, LedgerError};
use crate::domain::{Order, OutboxEntry, OutboxEvent, Partition, SkuSettings, StreamId};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use std::collections::HashSet;

type Tx<'a> = Transaction<'a, Postgres>;

impl Ledger {
    /// Records every entry not recorded before, in one transaction. Returns
    /// how many were new.
    pub async fn record(&self, entries: &[OutboxEntry]) -> Result<usize, LedgerError> {
        let mut tx = self.pool.begin().await?;
        let recorded = record_entries(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(recorded)
    }

    /// The drain's step in partition `p`: records `entries` (the outbox
    /// entries of `p` right after `from`, in stream order), adds their
    /// movements to `skus.on_hand` and moves `p`'s watermark from `from` to
    /// the last of them, in one transaction. `None` when the watermark is no
    /// longer at `from` (another instance's drain moved it): nothing is
    /// written then.
    pub async fn advance(
        &self,
        p: Partition,
        from: StreamId,
        entries: &[OutboxEntry],
    ) -> Result<Option<usize>, LedgerError> {
        let Some(to) = entries.last().map(|e| e.id) else {
            return Ok(Some(0));
        };
        let mut tx = self.pool.begin().await?;
        // The locked watermark row makes drains take turns: skus.on_hand
        // must get each entry's movements exactly once.
        sqlx::query(
            "INSERT INTO outbox_watermark (partition, stream_ms, stream_seq) VALUES ($1, 0, 0)
             ON CONFLICT DO NOTHING",
        )
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
        let (ms, seq): (i64, i64) = sqlx::query_as(
            "SELECT stream_ms, stream_seq FROM outbox_watermark WHERE partition = $1 FOR UPDATE",
        )
        .bind(p.name())
        .fetch_one(&mut *tx)
        .await?;
        if (StreamId { ms, seq }) != from {
            return Ok(None);
        }
        let recorded = record_entries(&mut tx, entries).await?;
        // Every movement of an entry in (from, to] is committed now: those of
        // entries recorded by a commit meanwhile too, as each claim above
        // waited for the commit's transaction.
        sqlx::query(
            "UPDATE skus SET on_hand = skus.on_hand + m.delta,
                             updated_at = GREATEST(skus.updated_at, m.at)
             FROM (SELECT sku, sum(delta)::bigint AS delta, max(at) AS at FROM stock_movements
                   WHERE outbox_partition = $5
                     AND (outbox_ms, outbox_seq) > ($1, $2) AND (outbox_ms, outbox_seq) <= ($3, $4)
                   GROUP BY sku) m
             WHERE skus.sku = m.sku",
        )
        .bind(from.ms)
        .bind(from.seq)
        .bind(to.ms)
        .bind(to.seq)
        .bind(p.name())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE outbox_watermark SET stream_ms = $2, stream_seq = $3 WHERE partition = $1",
        )
        .bind(p.name())
        .bind(to.ms)
        .bind(to.seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(recorded))
    }
}

/// Claims the entries not recorded before and writes their rows. Returns
/// how many were new.
async fn record_entries(tx: &mut Tx<'_>, entries: &[OutboxEntry]) -> Result<usize, LedgerError> {
    let fresh = claim(tx, entries).await?;
    let fresh: Vec<&OutboxEntry> = entries
        .iter()
        .filter(|e| fresh.contains(&(e.partition.name(), e.id)))
        .collect();
    let mut moves = Movements::default();
    let mut orders = Vec::new();
    let mut parts = Vec::new();
    let mut returns = Vec::new();
    for entry in &fresh {
        match &entry.event {
            OutboxEvent::Commit { .. } => orders.push(*entry),
            OutboxEvent::Part { .. } => parts.push(*entry),
            other => {
                if let OutboxEvent::Return { return_id, at, .. } = other {
                    returns.push((return_id.as_str(), *at));
                }
                record_admin_change(tx, entry.partition, entry.id, other, &mut moves).await?
            }
        }
    }
    record_orders(tx, &orders, &mut moves).await?;
    record_parts(tx, &parts, &mut moves).await?;
    moves.insert(tx).await?;
    for (return_id, at) in returns {
        mark_restocked(tx, return_id, at).await?;
    }
    Ok(fresh.len())
}

/// Marks the entries as recorded; the ids of those that were not before.
/// Claims are made in stream order, so two writers claiming overlapping
/// entries queue instead of deadlocking.
async fn claim(
    tx: &mut Tx<'_>,
    entries: &[OutboxEntry],
) -> Result<HashSet<(String, StreamId)>, LedgerError> {
    let part: Vec<String> = entries.iter().map(|e| e.partition.name()).collect();
    let ms: Vec<i64> = entries.iter().map(|e| e.id.ms).collect();
    let seq: Vec<i64> = entries.iter().map(|e| e.id.seq).collect();
    let claimed: Vec<(String, i64, i64)> = sqlx::query_as(
        "INSERT INTO outbox_applied (partition, stream_ms, stream_seq)
         SELECT e.p, e.ms, e.seq FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS e(p, ms, seq)
         ORDER BY e.p, e.ms, e.seq
         ON CONFLICT DO NOTHING
         RETURNING partition, stream_ms, stream_seq",
    )
    .bind(&part)
    .bind(&ms)
    .bind(&seq)
    .fetch_all(&mut **tx)
    .await?;
    Ok(claimed
        .into_iter()
        .map(|(p, ms, seq)| (p, StreamId { ms, seq }))
        .collect())
}

/// Movement rows to append, gathered column by column.
#[derive(Default)]
struct Movements {
    sku: Vec<String>,
    at: Vec<DateTime<Utc>>,
    kind: Vec<&'static str>,
    delta: Vec<i64>,
    after: Vec<i64>,
    reference: Vec<String>,
    partition: Vec<String>,
    ms: Vec<i64>,
    seq: Vec<i64>,
}

impl Movements {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        (p, id): (Partition, StreamId),
        kind: &'static str,
        reference: &str,
        at: DateTime<Utc>,
        sku: &str,
        delta: i64,
        after: i64,
    ) {
        self.sku.push(sku.to_owned());
        self.at.push(at);
        self.kind.push(kind);
        self.delta.push(delta);
        self.after.push(after);
        self.reference.push(reference.to_owned());
        self.partition.push(p.name());
        self.ms.push(id.ms);
        self.seq.push(id.seq);
    }

    async fn insert(&self, tx: &mut Tx<'_>) -> Result<(), LedgerError> {
        if self.sku.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO stock_movements (sku, at, kind, delta, on_hand_after, ref,
                                          outbox_partition, outbox_ms, outbox_seq)
             SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::bigint[],
                                  $5::bigint[], $6::text[], $7::text[], $8::bigint[], $9::bigint[])",
        )
        .bind(&self.sku)
        .bind(&self.at)
        .bind(&self.kind)
        .bind(&self.delta)
        .bind(&self.after)
        .bind(&self.reference)
        .bind(&self.partition)
        .bind(&self.ms)
        .bind(&self.seq)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// Orders with their lines, and their movements into `moves`.
async fn record_orders(
    tx: &mut Tx<'_>,
    entries: &[&OutboxEntry],
    moves: &mut Movements,
) -> Result<(), LedgerError> {
    let commits: Vec<((Partition, StreamId), &Order, &[crate::domain::SoldLine])> = entries
        .iter()
        .filter_map(|e| match &e.event {
            OutboxEvent::Commit { order, sold } => {
                Some(((e.partition, e.id), order, sold.as_slice()))
            }
            _ => None,
        })
        .collect();
    if commits.is_empty() {
        return Ok(());
    }
    let column = |f: &dyn Fn(&Order) -> Option<String>| -> Vec<Option<String>> {
        commits.iter().map(|(_, o, _)| f(o)).collect()
    };
    let order_ids = column(&|o| Some(o.order_id.to_string()));
    let inserted: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO orders (order_id, reservation_id, customer_id, channel, payment_ref,
                             committed_at, outbox_ms, outbox_seq)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::timestamptz[], $7::bigint[], $8::bigint[])
         ON CONFLICT DO NOTHING
         RETURNING order_id",
    )
    .bind(&order_ids)
    .bind(column(&|o| Some(o.reservation_id.to_string())))
    .bind(column(&|o| o.customer_id.clone()))
    .bind(column(&|o| o.channel.clone()))
    .bind(column(&|o| o.payment_ref.clone()))
    .bind(
        commits
            .iter()
            .map(|(_, o, _)| o.committed_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        commits
            .iter()
            .map(|((_, id), _, _)| id.ms)
            .collect::<Vec<_>>(),
    )
    .bind(
        commits
            .iter()
            .map(|((_, id), _, _)| id.seq)
            .collect::<Vec<_>>(),
    )
    .fetch_all(&mut **tx)
    .await?;
    let mut inserted: HashSet<String> = inserted.into_iter().map(|(o,)| o).collect();

    let (mut line_order, mut line_no, mut line_sku, mut line_qty) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, order, sold) in &commits {
        let order_id = order.order_id.as_str();
        // Each inserted order id takes its lines once.
        if inserted.remove(order_id) {
            // The order's lines: every line of the basket, also those sold
            // in other partitions (their movements come with their parts).
            for (n, line) in order.lines.iter().enumerate() {
                line_order.push(order_id);
                line_no.push(n as i32 + 1);
                line_sku.push(line.sku.as_str());
                line_qty.push(line.qty);
            }
        } else if same_sale_recorded(tx, order).await? {
            // The same sale under another outbox entry: a Redis that lost its
            // last moments let this hold be committed again. Counted once.
            tracing::warn!(order = %order.order_id, reservation = %order.reservation_id, outbox = %id.1,
                "sale already in the ledger; outbox entry ignored");
            continue;
        } else {
            // The sale happened in Redis all the same, so its stock movements
            // are recorded below; only the clashing order row is not.
            tracing::error!(order = %order.order_id, reservation = %order.reservation_id, outbox = %id.1,
                "order id already in the ledger for another reservation; movements recorded, order row not");
        }
        for line in sold.iter() {
            moves.push(
                *id,
                "commit",
                order_id,
                order.committed_at,
                line.sku.as_str(),
                -line.qty,
                line.on_hand_after,
            );
        }
    }
    if !line_order.is_empty() {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, sku, qty)
             SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[])",
        )
        .bind(&line_order)
        .bind(&line_no)
        .bind(&line_sku)
        .bind(&line_qty)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The movements of parts of baskets sold over several partitions, each
/// part (order, partition) once.
async fn record_parts(
    tx: &mut Tx<'_>,
    entries: &[&OutboxEntry],
    moves: &mut Movements,
) -> Result<(), LedgerError> {
    if entries.is_empty() {
        return Ok(());
    }
    let orders: Vec<&str> = entries
        .iter()
        .filter_map(|e| match &e.event {
            OutboxEvent::Part { order_id, .. } => Some(order_id.as_str()),
            _ => None,
        })
        .collect();
    let partitions: Vec<String> = entries.iter().map(|e| e.partition.name()).collect();
    let fresh: HashSet<(String, String)> = sqlx::query_as(
        "INSERT INTO order_parts (order_id, partition)
         SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT DO NOTHING
         RETURNING order_id, partition",
    )
    .bind(&orders)
    .bind(&partitions)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    for entry in entries {
        let OutboxEvent::Part {
            order_id,
            reservation_id,
            sold,
            at,
        } = &entry.event
        else {
            continue;
        };
        if !fresh.contains(&(order_id.to_string(), entry.partition.name())) {
            tracing::warn!(order = %order_id, reservation = %reservation_id, outbox = %entry.id,
                partition = %entry.partition, "part of a sale already in the ledger; entry ignored");
            continue;
        }
        for line in sold {
            moves.push(
                (entry.partition, entry.id),
                "commit",
                order_id.as_str(),
                *at,
                line.sku.as_str(),
                -line.qty,
                line.on_hand_after,
            );
        }
    }
    Ok(())
}

/// Marks a restocking return as restocked once every one of its lines has
/// its movement (a return over several partitions restocks each part with
/// its own outbox entry).
async fn mark_restocked(
    tx: &mut Tx<'_>,
    return_id: &str,
    at: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE returns SET restocked_at = $2
         WHERE return_id = $1 AND restocked_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM return_lines rl
                           WHERE rl.return_id = $1
                             AND NOT EXISTS (SELECT 1 FROM stock_movements m
                                             WHERE m.sku = rl.sku AND m.kind = 'return'
                                               AND m.ref = $1))",
    )
    .bind(return_id)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether the ledger has a sale of this reservation already (a
/// reservation is sold at most once, whatever its order id).
async fn same_sale_recorded(tx: &mut Tx<'_>, order: &Order) -> Result<bool, LedgerError> {
    let found: Option<(String,)> =
        sqlx::query_as("SELECT order_id FROM orders WHERE reservation_id = $1")
            .bind(order.reservation_id.as_str())
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// A SKU set-up, adjustment or restock: its own rows now, its movements into
/// `moves`. These are rare next to commits, so one entry at a time.
async fn record_admin_change(
    tx: &mut Tx<'_>,
    p: Partition,
    id: StreamId,
    event: &OutboxEvent,
    moves: &mut Movements,
) -> Result<(), LedgerError> {
    match event {
        OutboxEvent::Commit { .. } | OutboxEvent::Part { .. } => {
            unreachable!("sales are recorded by record_orders and record_parts")
        }
        OutboxEvent::Sku {
            sku,
            created,
            delta,
            on_hand_after,
            settings,
            at,
        } => {
            upsert_sku(tx, id, sku.as_str(), settings, *at).await?;
            if *created || *delta != 0 {
                let kind = if *created { "created" } else { "adjustment" };
                let reference = format!("sku-put:{id}");
                moves.push(
                    (p, id),
                    kind,
                    &reference,
                    *at,
                    sku.as_str(),
                    *delta,
                    *on_hand_after,
                );
            }
        }
        OutboxEvent::Adjustment {
            sku,
            adjustment_id,
            delta,
            on_hand_after,
            reason,
            at,
        } => {
            sqlx::query(
                "INSERT INTO adjustments (adjustment_id, sku, delta, reason, at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(adjustment_id)
            .bind(sku.as_str())
            .bind(delta)
            .bind(reason)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            let sku = sku.as_str();
            moves.push(
                (p, id),
                "adjustment",
                adjustment_id,
                *at,
                sku,
                *delta,
                *on_hand_after,
            );
        }
        OutboxEvent::Return {
            return_id,
            lines,
            at,
            ..
        } => {
            for l in lines {
                moves.push(
                    (p, id),
                    "return",
                    return_id,
                    *at,
                    l.sku.as_str(),
                    l.qty,
                    l.on_hand_after,
                );
            }
        }
    }
    Ok(())
}

/// Creates the SKU's row (its on_hand comes with the drain) or takes its
/// settings when they are newer than the row's: entries may be recorded out
/// of order.
async fn upsert_sku(
    tx: &mut Tx<'_>,
    id: StreamId,
    sku: &str,
    settings: &SkuSettings,
    at: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO skus (sku, on_hand, backorder_limit, per_customer_limit, sale_starts_at,
                           settings_ms, settings_seq, created_at, updated_at)
         VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $7)
         ON CONFLICT (sku) DO UPDATE SET
           backorder_limit = CASE WHEN newer THEN EXCLUDED.backorder_limit ELSE skus.backorder_limit END,
           per_customer_limit = CASE WHEN newer THEN EXCLUDED.per_customer_limit ELSE skus.per_customer_limit END,
           sale_starts_at = CASE WHEN newer THEN EXCLUDED.sale_starts_at ELSE skus.sale_starts_at END,
           settings_ms = GREATEST(skus.settings_ms, EXCLUDED.settings_ms),
           settings_seq = CASE WHEN newer THEN EXCLUDED.settings_seq ELSE skus.settings_seq END"
            .replace(
                "newer",
                "(EXCLUDED.settings_ms, EXCLUDED.settings_seq) > (skus.settings_ms, skus.settings_seq)",
            )
            .as_str(),
    )
    .bind(sku)
    .bind(settings.backorder_limit)
    .bind(settings.per_customer_limit)
    .bind(settings.sale_starts_at)
    .bind(id.ms)
    .bind(id.seq)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
