//! Applying outbox entries: each at most once, in one transaction per batch.

use super::{Ledger, LedgerError, PARTITION};
use crate::domain::{Order, OutboxEntry, OutboxEvent, SkuSettings, SoldLine, StreamId};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

type Tx<'a> = Transaction<'a, Postgres>;

impl Ledger {
    /// Applies every entry not applied before and, when `watermark` is given,
    /// moves the watermark forward to it, all in one transaction. Returns how
    /// many entries were new.
    pub async fn apply(
        &self,
        entries: &[OutboxEntry],
        watermark: Option<StreamId>,
    ) -> Result<usize, LedgerError> {
        let mut tx = self.pool.begin().await?;
        lock_skus(&mut tx, entries).await?;
        let mut applied = 0;
        for entry in entries {
            if !claim(&mut tx, entry.id).await? {
                continue;
            }
            apply_entry(&mut tx, entry).await?;
            applied += 1;
        }
        if let Some(w) = watermark {
            sqlx::query(
                "INSERT INTO outbox_watermark (partition, stream_ms, stream_seq) VALUES ($1, $2, $3)
                 ON CONFLICT (partition) DO UPDATE
                 SET stream_ms = EXCLUDED.stream_ms, stream_seq = EXCLUDED.stream_seq
                 WHERE (EXCLUDED.stream_ms, EXCLUDED.stream_seq)
                     > (outbox_watermark.stream_ms, outbox_watermark.stream_seq)",
            )
            .bind(PARTITION)
            .bind(w.ms)
            .bind(w.seq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(applied)
    }
}

/// Locks the SKU rows the batch touches in SKU order, before anything else,
/// so concurrent appliers (commits, a second instance's drain) queue instead
/// of deadlocking.
async fn lock_skus(tx: &mut Tx<'_>, entries: &[OutboxEntry]) -> Result<(), LedgerError> {
    let mut skus: Vec<&str> = entries
        .iter()
        .flat_map(|e| {
            e.event
                .on_hand_deltas()
                .into_iter()
                .map(|(sku, _)| sku.as_str())
        })
        .collect();
    skus.sort_unstable();
    skus.dedup();
    sqlx::query("SELECT 1 FROM skus WHERE sku = ANY($1) ORDER BY sku FOR UPDATE")
        .bind(&skus)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the entry as applied; false if it was already.
async fn claim(tx: &mut Tx<'_>, id: StreamId) -> Result<bool, LedgerError> {
    let done = sqlx::query(
        "INSERT INTO outbox_applied (partition, stream_ms, stream_seq) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(PARTITION)
    .bind(id.ms)
    .bind(id.seq)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn apply_entry(tx: &mut Tx<'_>, entry: &OutboxEntry) -> Result<(), LedgerError> {
    let id = entry.id;
    match &entry.event {
        OutboxEvent::Commit { order, sold } => apply_commit(tx, id, order, sold).await,
        OutboxEvent::Sku {
            sku,
            created,
            delta,
            on_hand_after,
            settings,
            at,
        } => {
            apply_sku(
                tx,
                id,
                sku.as_str(),
                *created,
                *delta,
                *on_hand_after,
                settings,
                *at,
            )
            .await
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
            change_on_hand(tx, &[sku.as_str()], &[*delta], *at).await?;
            let moves = Moves {
                kind: "adjustment",
                reference: adjustment_id,
                at: *at,
                id,
            };
            record_movements(tx, &moves, &[sku.as_str()], &[*delta], &[*on_hand_after]).await
        }
        OutboxEvent::Return {
            return_id,
            lines,
            at,
            ..
        } => {
            let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
            let qtys: Vec<i64> = lines.iter().map(|l| l.qty).collect();
            let after: Vec<i64> = lines.iter().map(|l| l.on_hand_after).collect();
            change_on_hand(tx, &skus, &qtys, *at).await?;
            let moves = Moves {
                kind: "return",
                reference: return_id,
                at: *at,
                id,
            };
            record_movements(tx, &moves, &skus, &qtys, &after).await?;
            sqlx::query("UPDATE returns SET restocked_at = $2 WHERE return_id = $1")
                .bind(return_id)
                .bind(at)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }
}

async fn apply_commit(
    tx: &mut Tx<'_>,
    id: StreamId,
    order: &Order,
    sold: &[SoldLine],
) -> Result<(), LedgerError> {
    let skus: Vec<&str> = sold.iter().map(|s| s.sku.as_str()).collect();
    let qtys: Vec<i64> = sold.iter().map(|s| s.qty).collect();
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, reservation_id, customer_id, channel, payment_ref,
                             committed_at, outbox_ms, outbox_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(order.order_id.as_str())
    .bind(order.reservation_id.as_str())
    .bind(&order.customer_id)
    .bind(&order.channel)
    .bind(&order.payment_ref)
    .bind(order.committed_at)
    .bind(id.ms)
    .bind(id.seq)
    .execute(&mut **tx)
    .await?
    .rows_affected()
        == 1;
    if !inserted && same_sale_recorded(tx, order).await? {
        // The same sale under another outbox entry: a Redis that lost its
        // last moments let this hold be committed again. Counted once.
        tracing::warn!(order = %order.order_id, reservation = %order.reservation_id, outbox = %id,
            "sale already in the ledger; outbox entry ignored");
        return Ok(());
    }
    if inserted {
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, sku, qty)
             SELECT $1, l.n, l.sku, l.qty FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS l(sku, qty, n)",
        )
        .bind(order.order_id.as_str())
        .bind(&skus)
        .bind(&qtys)
        .execute(&mut **tx)
        .await?;
    } else {
        // The sale happened in Redis all the same, so its stock movements are
        // recorded below; only the clashing order row is not.
        tracing::error!(order = %order.order_id, reservation = %order.reservation_id, outbox = %id,
            "order id already in the ledger for another reservation; movements recorded, order row not");
    }
    let after: Vec<i64> = sold.iter().map(|s| s.on_hand_after).collect();
    let deltas: Vec<i64> = qtys.iter().map(|q| -q).collect();
    change_on_hand(tx, &skus, &deltas, order.committed_at).await?;
    let moves = Moves {
        kind: "commit",
        reference: order.order_id.as_str(),
        at: order.committed_at,
        id,
    };
    record_movements(tx, &moves, &skus, &deltas, &after).await
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

/// Adds `deltas` to the persisted `on_hand` of `skus`.
async fn change_on_hand(
    tx: &mut Tx<'_>,
    skus: &[&str],
    deltas: &[i64],
    at: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE skus SET on_hand = skus.on_hand + d.delta, updated_at = $3
         FROM unnest($1::text[], $2::bigint[]) AS d(sku, delta) WHERE skus.sku = d.sku",
    )
    .bind(skus)
    .bind(deltas)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn apply_sku(
    tx: &mut Tx<'_>,
    id: StreamId,
    sku: &str,
    created: bool,
    delta: i64,
    on_hand_after: i64,
    settings: &SkuSettings,
    at: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO skus (sku, on_hand, backorder_limit, per_customer_limit, sale_starts_at,
                           settings_ms, settings_seq, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
         ON CONFLICT (sku) DO UPDATE SET
           on_hand = skus.on_hand + EXCLUDED.on_hand,
           updated_at = EXCLUDED.updated_at,
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
    .bind(delta)
    .bind(settings.backorder_limit)
    .bind(settings.per_customer_limit)
    .bind(settings.sale_starts_at)
    .bind(id.ms)
    .bind(id.seq)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    let kind = if created { "created" } else { "adjustment" };
    if created || delta != 0 {
        let reference = format!("sku-put:{id}");
        let moves = Moves {
            kind,
            reference: &reference,
            at,
            id,
        };
        record_movements(tx, &moves, &[sku], &[delta], &[on_hand_after]).await?;
    }
    Ok(())
}

/// What a set of movement rows has in common.
struct Moves<'a> {
    kind: &'a str,
    reference: &'a str,
    at: DateTime<Utc>,
    id: StreamId,
}

/// Appends one movement row per SKU.
async fn record_movements(
    tx: &mut Tx<'_>,
    moves: &Moves<'_>,
    skus: &[&str],
    deltas: &[i64],
    after: &[i64],
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO stock_movements (sku, at, kind, delta, on_hand_after, ref, outbox_ms, outbox_seq)
         SELECT m.sku, $4, $5, m.delta, m.after, $6, $7, $8
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS m(sku, delta, after)",
    )
    .bind(skus)
    .bind(deltas)
    .bind(after)
    .bind(moves.at)
    .bind(moves.kind)
    .bind(moves.reference)
    .bind(moves.id.ms)
    .bind(moves.id.seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
