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
//!
//! Rows per sold line are the commit path's cost: a line is one
//! `stock_movements` row with one index entry; the order keeps its lines in
//! its own row, and each entry's claim in `outbox_applied` carries its
//! movements summed per SKU, which is what the drain and the snapshot add up
//! (no index on the movements' outbox position).

use super::copy::BinaryRows;
use super::{Ledger, LedgerError};
use crate::domain::{
    pool_account, Order, OutboxEntry, OutboxEvent, Partition, PoolLine, SkuSettings, SoldLine,
    StreamId,
};
use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

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
        // Most entries are recorded already (a commit records its own): only
        // the others are claimed, so the step does not send every line again.
        let applied: HashSet<(i64, i64)> = sqlx::query_as(
            "SELECT stream_ms, stream_seq FROM outbox_applied
             WHERE partition = $1
               AND (stream_ms, stream_seq) > ($2, $3) AND (stream_ms, stream_seq) <= ($4, $5)",
        )
        .bind(p.name())
        .bind(from.ms)
        .bind(from.seq)
        .bind(to.ms)
        .bind(to.seq)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let unrecorded: Vec<OutboxEntry> = entries
            .iter()
            .filter(|e| !applied.contains(&(e.id.ms, e.id.seq)))
            .cloned()
            .collect();
        let recorded = record_entries(&mut tx, &unrecorded).await?;
        // Every movement of an entry in (from, to] is committed now: those of
        // entries recorded by a commit meanwhile too, as each claim above
        // waited for the commit's transaction.
        sqlx::query(
            "UPDATE skus SET on_hand = skus.on_hand + m.delta,
                             updated_at = GREATEST(skus.updated_at, m.at)
             FROM (SELECT d.sku, sum(d.delta)::bigint AS delta,
                          to_timestamp(max(a.stream_ms) / 1000.0) AS at
                   FROM outbox_applied a, unnest(a.skus, a.deltas) AS d(sku, delta)
                   WHERE a.partition = $5
                     AND (a.stream_ms, a.stream_seq) > ($1, $2)
                     AND (a.stream_ms, a.stream_seq) <= ($3, $4)
                   GROUP BY d.sku) m
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
    if entries.is_empty() {
        return Ok(0);
    }
    let planned: Vec<Vec<Move<'_>>> = entries.iter().map(moves_of).collect();
    let mut fresh = claim(tx, entries, &planned).await?;
    let mut moves = Movements::default();
    let mut orders = Vec::new();
    let mut parts = Vec::new();
    let mut returns = Vec::new();
    let mut recorded = 0;
    for (entry, planned) in entries.iter().zip(planned) {
        // Taken out as it is seen: an entry named twice in a batch (a commit
        // and its retry) is recorded once.
        if !fresh.remove(&(entry.partition.name(), entry.id)) {
            continue;
        }
        recorded += 1;
        match &entry.event {
            OutboxEvent::Commit { .. } => orders.push((entry, planned)),
            OutboxEvent::Part { .. } => parts.push((entry, planned)),
            other => {
                if let OutboxEvent::Return {
                    return_id,
                    lines,
                    at,
                    ..
                } = other
                {
                    let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
                    returns.push((return_id.as_str(), skus, *at));
                }
                record_admin_change(tx, entry.id, other).await?;
                moves.extend(entry, planned);
            }
        }
    }
    let mut unsold = record_orders(tx, orders, &mut moves).await?;
    unsold.extend(record_parts(tx, parts, &mut moves).await?);
    moves.insert(tx).await?;
    forget_deltas(tx, &unsold).await?;
    for (return_id, skus, at) in returns {
        mark_restocked(tx, return_id, &skus, at).await?;
    }
    Ok(recorded)
}

/// One stock movement an outbox entry makes, of a SKU or of a channel's
/// allocation of one (its account `sku@channel`, see `pool_account`).
struct Move<'a> {
    kind: &'static str,
    reference: Cow<'a, str>,
    at: DateTime<Utc>,
    sku: Cow<'a, str>,
    delta: i64,
    on_hand_after: i64,
}

/// The movements an entry makes when it is recorded (a sale the ledger has
/// already is not recorded again: see `record_orders` and `record_parts`).
fn moves_of(entry: &OutboxEntry) -> Vec<Move<'_>> {
    fn sold<'a>(
        kind: &'static str,
        reference: &'a str,
        at: DateTime<Utc>,
        (lines, pools): (&'a [SoldLine], &'a [PoolLine]),
        sign: i64,
    ) -> Vec<Move<'a>> {
        let skus = lines.iter().map(move |l| Move {
            kind,
            reference: Cow::Borrowed(reference),
            at,
            sku: Cow::Borrowed(l.sku.as_str()),
            delta: sign * l.qty,
            on_hand_after: l.on_hand_after,
        });
        let allocations = pools.iter().map(move |p| Move {
            kind,
            reference: Cow::Borrowed(reference),
            at,
            sku: Cow::Owned(p.account()),
            delta: sign * p.qty,
            on_hand_after: p.share_after,
        });
        skus.chain(allocations).collect()
    }
    match &entry.event {
        OutboxEvent::Commit {
            order,
            sold: lines,
            pools,
        } => sold(
            "commit",
            order.order_id.as_str(),
            order.committed_at,
            (lines, pools),
            -1,
        ),
        OutboxEvent::Part {
            order_id,
            sold: lines,
            pools,
            at,
            ..
        } => sold("commit", order_id.as_str(), *at, (lines, pools), -1),
        OutboxEvent::Return {
            return_id,
            lines,
            pools,
            at,
            ..
        } => sold("return", return_id, *at, (lines, pools), 1),
        OutboxEvent::Sku {
            sku,
            created,
            delta,
            on_hand_after,
            settings,
            allocations,
            safety_delta,
            at,
        } => {
            let reference = format!("sku-put:{}", entry.id);
            let mut moves = Vec::new();
            if *created || *delta != 0 {
                moves.push(Move {
                    kind: if *created { "created" } else { "adjustment" },
                    reference: Cow::Owned(reference.clone()),
                    at: *at,
                    sku: Cow::Borrowed(sku.as_str()),
                    delta: *delta,
                    on_hand_after: *on_hand_after,
                });
            }
            // Units set aside move within on_hand: a row of the SKU's own
            // (delta 0) says what changed, and each allocation's account
            // takes its share's change.
            for a in allocations {
                moves.push(Move {
                    kind: "allocation",
                    reference: Cow::Owned(format!(
                        "{}: allocation {} ({:+})",
                        a.channel, a.share_after, a.delta
                    )),
                    at: *at,
                    sku: Cow::Borrowed(sku.as_str()),
                    delta: 0,
                    on_hand_after: *on_hand_after,
                });
                moves.push(Move {
                    kind: "allocation",
                    reference: Cow::Owned(reference.clone()),
                    at: *at,
                    sku: Cow::Owned(pool_account(sku, &a.channel)),
                    delta: a.delta,
                    on_hand_after: a.share_after,
                });
            }
            if *safety_delta != 0 {
                moves.push(Move {
                    kind: "allocation",
                    reference: Cow::Owned(format!(
                        "safety stock {} ({:+})",
                        settings.safety_stock, safety_delta
                    )),
                    at: *at,
                    sku: Cow::Borrowed(sku.as_str()),
                    delta: 0,
                    on_hand_after: *on_hand_after,
                });
            }
            moves
        }
        OutboxEvent::Transfer {
            sku,
            transfer_id,
            delta,
            on_hand_after,
            at,
        } => vec![Move {
            kind: "transfer",
            reference: Cow::Borrowed(transfer_id),
            at: *at,
            sku: Cow::Borrowed(sku.as_str()),
            delta: *delta,
            on_hand_after: *on_hand_after,
        }],
        OutboxEvent::Adjustment {
            sku,
            adjustment_id,
            delta,
            on_hand_after,
            at,
            ..
        } => vec![Move {
            kind: "adjustment",
            reference: Cow::Borrowed(adjustment_id),
            at: *at,
            sku: Cow::Borrowed(sku.as_str()),
            delta: *delta,
            on_hand_after: *on_hand_after,
        }],
    }
}

/// Marks the entries as recorded, each with the change of on_hand its
/// movements make per SKU; the ids of those that were not recorded before.
/// Claims are made in stream order, so two writers claiming overlapping
/// entries queue instead of deadlocking.
async fn claim(
    tx: &mut Tx<'_>,
    entries: &[OutboxEntry],
    planned: &[Vec<Move<'_>>],
) -> Result<HashSet<(String, StreamId)>, LedgerError> {
    let part: Vec<String> = entries.iter().map(|e| e.partition.name()).collect();
    let ms: Vec<i64> = entries.iter().map(|e| e.id.ms).collect();
    let seq: Vec<i64> = entries.iter().map(|e| e.id.seq).collect();
    // Per entry, its SKUs and their net changes, flattened with the entry's
    // position in the batch (arrays of arrays cannot be ragged).
    let (mut at, mut skus, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    for (n, moves) in planned.iter().enumerate() {
        let mut net: BTreeMap<&str, i64> = BTreeMap::new();
        for m in moves {
            *net.entry(&m.sku).or_default() += m.delta;
        }
        for (sku, delta) in net {
            at.push(n as i32 + 1);
            skus.push(sku);
            deltas.push(delta);
        }
    }
    let claimed: Vec<(String, i64, i64)> = sqlx::query_as(
        "WITH d AS (SELECT n, array_agg(sku) AS skus, array_agg(delta) AS deltas
                    FROM unnest($4::int[], $5::text[], $6::bigint[]) AS d(n, sku, delta)
                    GROUP BY n)
         INSERT INTO outbox_applied (partition, stream_ms, stream_seq, skus, deltas)
         SELECT e.p, e.ms, e.seq, coalesce(d.skus, '{}'), coalesce(d.deltas, '{}')
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS e(p, ms, seq, n)
         LEFT JOIN d ON d.n = e.n
         ORDER BY e.p, e.ms, e.seq
         ON CONFLICT DO NOTHING
         RETURNING partition, stream_ms, stream_seq",
    )
    .bind(&part)
    .bind(&ms)
    .bind(&seq)
    .bind(&at)
    .bind(&skus)
    .bind(&deltas)
    .fetch_all(&mut **tx)
    .await?;
    Ok(claimed
        .into_iter()
        .map(|(p, ms, seq)| (p, StreamId { ms, seq }))
        .collect())
}

/// Entries claimed whose sale the ledger had already: their claims carry
/// no change of on_hand after all.
async fn forget_deltas(
    tx: &mut Tx<'_>,
    entries: &[(Partition, StreamId)],
) -> Result<(), LedgerError> {
    if entries.is_empty() {
        return Ok(());
    }
    let part: Vec<String> = entries.iter().map(|(p, _)| p.name()).collect();
    let ms: Vec<i64> = entries.iter().map(|(_, id)| id.ms).collect();
    let seq: Vec<i64> = entries.iter().map(|(_, id)| id.seq).collect();
    sqlx::query(
        "UPDATE outbox_applied a SET skus = '{}', deltas = '{}'
         FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS e(p, ms, seq)
         WHERE (a.partition, a.stream_ms, a.stream_seq) = (e.p, e.ms, e.seq)",
    )
    .bind(&part)
    .bind(&ms)
    .bind(&seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Movement rows to append, in `COPY`'s binary format.
#[derive(Default)]
struct Movements {
    rows: BinaryRows,
}

impl Movements {
    /// The movements `entry` makes.
    fn extend(&mut self, entry: &OutboxEntry, moves: Vec<Move<'_>>) {
        let partition = entry.partition.name();
        for m in moves {
            let r = &mut self.rows;
            r.row(9);
            r.text(&m.sku);
            r.timestamptz(m.at);
            r.text(m.kind);
            r.int8(m.delta);
            r.int8(m.on_hand_after);
            r.text(&m.reference);
            r.text(&partition);
            r.int8(entry.id.ms);
            r.int8(entry.id.seq);
        }
    }

    async fn insert(self, tx: &mut Tx<'_>) -> Result<(), LedgerError> {
        if self.rows.len_rows() == 0 {
            return Ok(());
        }
        let mut copy = tx
            .copy_in_raw(
                "COPY stock_movements (sku, at, kind, delta, on_hand_after, ref,
                                       outbox_partition, outbox_ms, outbox_seq)
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        if let Err(e) = copy.send(self.rows.finish()).await {
            let _ = copy.abort("sending the rows failed").await;
            return Err(e.into());
        }
        copy.finish().await?;
        Ok(())
    }
}

/// Orders with their lines (in the order row), and their movements into
/// `moves`. Returns the entries whose sale the ledger had already.
async fn record_orders<'a>(
    tx: &mut Tx<'_>,
    commits: Vec<(&'a OutboxEntry, Vec<Move<'a>>)>,
    moves: &mut Movements,
) -> Result<Vec<(Partition, StreamId)>, LedgerError> {
    let orders: Vec<&Order> = commits
        .iter()
        .filter_map(|(e, _)| match &e.event {
            OutboxEvent::Commit { order, .. } => Some(order),
            _ => None,
        })
        .collect();
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: &dyn Fn(&Order) -> Option<String>| -> Vec<Option<String>> {
        orders.iter().map(|o| f(o)).collect()
    };
    // Every line of each basket, also those sold in other partitions (their
    // movements come with their parts), flattened with the order's position.
    let (mut line_of, mut line_sku, mut line_qty) = (Vec::new(), Vec::new(), Vec::new());
    for (n, order) in orders.iter().enumerate() {
        for line in &order.lines {
            line_of.push(n as i32 + 1);
            line_sku.push(line.sku.as_str());
            line_qty.push(line.qty);
        }
    }
    let inserted: Vec<(String,)> = sqlx::query_as(
        "WITH l AS (SELECT n, array_agg(sku ORDER BY k) AS skus, array_agg(qty ORDER BY k) AS qtys,
                           array_agg(0::bigint) AS returned
                    FROM unnest($9::int[], $10::text[], $11::bigint[]) WITH ORDINALITY AS l(n, sku, qty, k)
                    GROUP BY n)
         INSERT INTO orders (order_id, reservation_id, customer_id, channel, payment_ref,
                             committed_at, outbox_ms, outbox_seq,
                             line_skus, line_qtys, line_returned)
         SELECT o.order_id, o.reservation_id, o.customer_id, o.channel, o.payment_ref,
                o.committed_at, o.ms, o.seq,
                coalesce(l.skus, '{}'), coalesce(l.qtys, '{}'), coalesce(l.returned, '{}')
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $7::bigint[], $8::bigint[])
              WITH ORDINALITY AS o(order_id, reservation_id, customer_id, channel, payment_ref,
                                   committed_at, ms, seq, n)
         LEFT JOIN l ON l.n = o.n
         ON CONFLICT DO NOTHING
         RETURNING order_id",
    )
    .bind(column(&|o| Some(o.order_id.to_string())))
    .bind(column(&|o| Some(o.reservation_id.to_string())))
    .bind(column(&|o| o.customer_id.clone()))
    .bind(column(&|o| o.channel.clone()))
    .bind(column(&|o| o.payment_ref.clone()))
    .bind(orders.iter().map(|o| o.committed_at).collect::<Vec<_>>())
    .bind(commits.iter().map(|(e, _)| e.id.ms).collect::<Vec<_>>())
    .bind(commits.iter().map(|(e, _)| e.id.seq).collect::<Vec<_>>())
    .bind(&line_of)
    .bind(&line_sku)
    .bind(&line_qty)
    .fetch_all(&mut **tx)
    .await?;
    let mut inserted: HashSet<String> = inserted.into_iter().map(|(o,)| o).collect();

    let mut unsold = Vec::new();
    for ((entry, planned), order) in commits.into_iter().zip(orders) {
        // Each inserted order id takes its movements once.
        if !inserted.remove(order.order_id.as_str()) {
            if same_sale_recorded(tx, order).await? {
                // The same sale under another outbox entry: a Redis that lost
                // its last moments let this hold be committed again. Counted
                // once.
                tracing::warn!(order = %order.order_id, reservation = %order.reservation_id, outbox = %entry.id,
                    "sale already in the ledger; outbox entry ignored");
                unsold.push((entry.partition, entry.id));
                continue;
            }
            // The sale happened in Redis all the same, so its stock
            // movements are recorded; only the clashing order row is not.
            tracing::error!(order = %order.order_id, reservation = %order.reservation_id, outbox = %entry.id,
                "order id already in the ledger for another reservation; movements recorded, order row not");
        }
        moves.extend(entry, planned);
    }
    Ok(unsold)
}

/// The movements of parts of baskets sold over several partitions, each
/// part (order, partition) once. Returns the parts the ledger had already.
async fn record_parts<'a>(
    tx: &mut Tx<'_>,
    parts: Vec<(&'a OutboxEntry, Vec<Move<'a>>)>,
    moves: &mut Movements,
) -> Result<Vec<(Partition, StreamId)>, LedgerError> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let order_of = |e: &OutboxEntry| match &e.event {
        OutboxEvent::Part { order_id, .. } => order_id.to_string(),
        _ => unreachable!("record_parts takes parts only"),
    };
    let orders: Vec<String> = parts.iter().map(|(e, _)| order_of(e)).collect();
    let partitions: Vec<String> = parts.iter().map(|(e, _)| e.partition.name()).collect();
    let mut fresh: HashSet<(String, String)> = sqlx::query_as(
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
    let mut unsold = Vec::new();
    for ((entry, planned), order_id) in parts.into_iter().zip(orders) {
        // Taken as it is seen: a second entry selling the same part in this
        // batch (a partition that lost its last writes sold it again) is not.
        if !fresh.remove(&(order_id.clone(), entry.partition.name())) {
            tracing::warn!(order = %order_id, outbox = %entry.id, partition = %entry.partition,
                "part of a sale already in the ledger; entry ignored");
            unsold.push((entry.partition, entry.id));
            continue;
        }
        moves.extend(entry, planned);
    }
    Ok(unsold)
}

/// Marks the lines `skus` of a restocking return as back in on_hand, and the
/// return as restocked once every one of its lines is (a return over several
/// partitions restocks each part with its own outbox entry).
async fn mark_restocked(
    tx: &mut Tx<'_>,
    return_id: &str,
    skus: &[&str],
    at: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE return_lines SET restocked = true
         WHERE return_id = $1 AND sku = ANY($2) AND NOT restocked",
    )
    .bind(return_id)
    .bind(skus)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE returns SET restocked_at = $2
         WHERE return_id = $1 AND restocked_at IS NULL
           AND NOT EXISTS (SELECT 1 FROM return_lines
                           WHERE return_id = $1 AND NOT restocked)",
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

/// A SKU set-up or adjustment: its own rows (its movements come from
/// `moves_of`). These are rare next to commits, so one entry at a time.
async fn record_admin_change(
    tx: &mut Tx<'_>,
    id: StreamId,
    event: &OutboxEvent,
) -> Result<(), LedgerError> {
    match event {
        OutboxEvent::Commit { .. } | OutboxEvent::Part { .. } => {
            unreachable!("sales are recorded by record_orders and record_parts")
        }
        OutboxEvent::Sku {
            sku,
            settings,
            allocations,
            at,
            ..
        } => {
            upsert_sku(tx, id, sku.as_str(), settings, *at).await?;
            // Each allocation is an account of its own (its on_hand comes
            // with the drain, as a SKU's).
            let accounts: Vec<String> = allocations
                .iter()
                .map(|a| pool_account(sku, &a.channel))
                .collect();
            sqlx::query(
                "INSERT INTO skus (sku, on_hand, settings_ms, settings_seq, created_at, updated_at)
                 SELECT a, 0, $2, $3, $4, $4 FROM unnest($1::text[]) AS a
                 ON CONFLICT (sku) DO NOTHING",
            )
            .bind(&accounts)
            .bind(id.ms)
            .bind(id.seq)
            .bind(at)
            .execute(&mut **tx)
            .await?;
        }
        OutboxEvent::Adjustment {
            sku,
            adjustment_id,
            delta,
            reason,
            at,
            ..
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
        }
        // The return itself was recorded before its restock reached Redis;
        // a transfer is its movement alone.
        OutboxEvent::Return { .. } | OutboxEvent::Transfer { .. } => {}
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
                           settings_ms, settings_seq, created_at, updated_at,
                           buckets, bucket_span, safety_stock, allocations, low_stock)
         VALUES ($1, 0, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (sku) DO UPDATE SET
           low_stock = CASE WHEN newer THEN EXCLUDED.low_stock ELSE skus.low_stock END,
           safety_stock = CASE WHEN newer THEN EXCLUDED.safety_stock ELSE skus.safety_stock END,
           allocations = CASE WHEN newer THEN EXCLUDED.allocations ELSE skus.allocations END,
           buckets = CASE WHEN newer THEN EXCLUDED.buckets ELSE skus.buckets END,
           bucket_span = GREATEST(skus.bucket_span, EXCLUDED.bucket_span),
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
    .bind(settings.buckets)
    .bind(settings.bucket_span)
    .bind(settings.safety_stock)
    .bind(&settings.allocations)
    .bind(settings.low_stock)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
