//! Reading orders back from the ledger.

use super::{Ledger, LedgerError};
use crate::domain::{Order, OrderId, OrderLine, ReservationId, Sku};
use anyhow::anyhow;
use chrono::{DateTime, Utc};

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: String,
    reservation_id: String,
    customer_id: Option<String>,
    channel: Option<String>,
    payment_ref: Option<String>,
    committed_at: DateTime<Utc>,
    line_skus: Vec<String>,
    line_qtys: Vec<i64>,
    line_returned: Vec<i64>,
}

const SELECT_ORDER: &str = "SELECT order_id, reservation_id, customer_id, channel, payment_ref,
                                   committed_at, line_skus, line_qtys, line_returned
                            FROM orders";

impl Ledger {
    /// A persisted order by id.
    pub async fn order(&self, order_id: &OrderId) -> Result<Option<Order>, LedgerError> {
        let row: Option<OrderRow> = sqlx::query_as(&format!("{SELECT_ORDER} WHERE order_id = $1"))
            .bind(order_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        order_of(row)
    }

    /// The persisted order a reservation became.
    pub async fn order_for_reservation(
        &self,
        id: &ReservationId,
    ) -> Result<Option<Order>, LedgerError> {
        let row: Option<OrderRow> =
            sqlx::query_as(&format!("{SELECT_ORDER} WHERE reservation_id = $1"))
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        order_of(row)
    }

    /// The persisted orders of any of these reservations.
    pub async fn orders_of_reservations(
        &self,
        ids: &[ReservationId],
    ) -> Result<Vec<Order>, LedgerError> {
        let ids: Vec<&str> = ids.iter().map(ReservationId::as_str).collect();
        let rows: Vec<OrderRow> =
            sqlx::query_as(&format!("{SELECT_ORDER} WHERE reservation_id = ANY($1)"))
                .bind(&ids)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .filter_map(|row| order_of(Some(row)).transpose())
            .collect()
    }
}

/// The order a row holds, its lines read from the row's arrays.
fn order_of(row: Option<OrderRow>) -> Result<Option<Order>, LedgerError> {
    let Some(row) = row else {
        return Ok(None);
    };
    let corrupt =
        |what: String| LedgerError::Internal(anyhow!("corrupt order {}: {what}", row.order_id));
    let lines = row
        .line_skus
        .iter()
        .zip(&row.line_qtys)
        .zip(&row.line_returned)
        .map(|((sku, &qty), &returned_qty)| {
            Ok(OrderLine {
                sku: Sku::parse(sku).map_err(corrupt)?,
                qty,
                returned_qty,
            })
        })
        .collect::<Result<_, LedgerError>>()?;
    Ok(Some(Order {
        order_id: OrderId::parse(&row.order_id).map_err(corrupt)?,
        reservation_id: ReservationId::parse(&row.reservation_id)
            .ok_or_else(|| corrupt("reservation id".into()))?,
        customer_id: row.customer_id,
        channel: row.channel,
        payment_ref: row.payment_ref,
        lines,
        committed_at: row.committed_at,
        persisted: true,
    }))
}
