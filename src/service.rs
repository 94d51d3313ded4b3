//! Operations that span the engine and the ledger: a change made atomically
//! in Redis, then its outbox entry written to Postgres before the answer.

use crate::domain::{
    AdjustmentRequest, CommitRequest, Hold, HoldStatus, Order, OrderId, Partition, PutSkuRequest,
    Rejection, ReservationId, ReturnRequest, Sku, SkuView, StreamId,
};
use crate::engine::{Adjusted, Engine, EngineError, EntryRef, SkuPut};
use crate::ledger::{GroupCommit, Ledger, LedgerError, ReturnRecorded};
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt, TryStreamExt};

/// Outbox entries read at a time when looking for the first not applied.
const LAG_PAGE: usize = 500;

/// Most outbox entries read per partition when looking for the first not
/// applied.
const LAG_WALK: usize = 10_000;

/// Partitions whose outbox lag is read at once.
const LAG_PARTITIONS_AT_ONCE: usize = 4;

/// A commit's outcome.
#[derive(Debug, Clone)]
pub struct CommitOutcome {
    /// The order, with `persisted` saying whether it is in Postgres.
    pub order: Order,
    /// Whether this call made the sale (false: committed before).
    pub fresh: bool,
}

/// The figures of the admin console's overview.
#[derive(Debug, Clone)]
pub struct Overview {
    /// SKUs set up (None while Postgres cannot be reached).
    pub skus: Option<i64>,
    /// Live hold records in Redis (a basket counts once per partition).
    pub live_holds: u64,
    /// Age in ms of the oldest outbox entry Postgres does not have yet
    /// (None while Postgres cannot be reached).
    pub outbox_lag_ms: Option<i64>,
    /// Commits answered 202 per minute (Unix time / 60), oldest first, of
    /// the last [`crate::engine::TALLY_MINUTES`].
    pub not_persisted_per_minute: Vec<(i64, i64)>,
    /// When the figures were read.
    pub at: DateTime<Utc>,
}

/// The stock engine and the ledger, used together.
#[derive(Clone)]
pub struct Stock {
    /// Live counts and holds.
    pub engine: Engine,
    /// The permanent record.
    pub ledger: Ledger,
    /// Records outbox entries of callers waiting for them, many at a time.
    recorder: GroupCommit,
}

impl Stock {
    /// The engine and ledger together; starts the group-commit writers
    /// (`writers` transactions at once, up to `batch` entries each).
    pub fn new(engine: Engine, ledger: Ledger, writers: usize, batch: usize) -> Self {
        let recorder = GroupCommit::start(ledger.clone(), writers, batch);
        let durable = recorder.clone();
        engine.set_durable(std::sync::Arc::new(move |entry| {
            let durable = durable.clone();
            Box::pin(async move { durable.record(entry).await })
        }));
        Stock {
            engine,
            ledger,
            recorder,
        }
    }

    /// Commits a hold and persists the sale. When Postgres cannot take it,
    /// the sale stands (made atomically in Redis, in the outbox) and the
    /// order says `persisted: false`; the outbox drain persists it later.
    /// When Redis no longer knows the hold as held (it lost its last writes,
    /// or the hold ended there after its sale was lost), the ledger has the
    /// last word: an order of this reservation is the answer.
    pub async fn commit(
        &self,
        id: &ReservationId,
        req: &CommitRequest,
    ) -> Result<CommitOutcome, EngineError> {
        let order_id = req
            .order_id
            .clone()
            .unwrap_or_else(|| OrderId::for_reservation(id));
        let committed = match self
            .engine
            .commit(id, &order_id, req.payment_ref.as_deref())
            .await
        {
            Ok(committed) => committed,
            Err(EngineError::Rejected(
                refused @ (Rejection::NotFound | Rejection::Expired | Rejection::Released),
            )) => {
                return match self.ledger.order_for_reservation(id).await {
                    Ok(Some(order)) => Ok(CommitOutcome {
                        order,
                        fresh: false,
                    }),
                    Ok(None)
                        if refused == Rejection::NotFound && self.engine.maybe_lost(id).await? =>
                    {
                        Err(Rejection::Lost.into())
                    }
                    Ok(None) => Err(refused.into()),
                    // Without the ledger, a refusal could be wrong.
                    Err(e) => Err(unavailable(e)),
                };
            }
            Err(e) => return Err(e),
        };
        let mut order = committed.order;
        let fresh = committed.fresh;
        if committed.outbox.is_empty() {
            // Committed before: the ledger's copy also knows about returns.
            if let Ok(Some(persisted)) = self.ledger.order(&order.order_id).await {
                order = persisted;
            }
        } else {
            // The order's entry and those of its parts in other partitions:
            // persisted only when every one is.
            let recorded = join_all(
                committed
                    .outbox
                    .into_iter()
                    .map(|e| self.recorder.record(e)),
            );
            order.persisted = recorded.await.into_iter().all(|done| done);
            if !order.persisted {
                metrics::counter!(crate::metrics::COMMITS_NOT_PERSISTED).increment(1);
                // For the console's overview, across instances. Only a
                // figure, counted after the answer: the sale stands whether
                // or not it is counted.
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    if let Err(e) = engine.tally_not_persisted().await {
                        tracing::debug!(error = %e, "a 202 not counted for the overview");
                    }
                });
            }
        }
        Ok(CommitOutcome { order, fresh })
    }

    /// The figures of the admin console's overview, read together; those
    /// from Postgres are None while it cannot be reached.
    pub async fn overview(&self) -> Result<Overview, EngineError> {
        let at = Utc::now();
        let (live_holds, per_minute, skus, outbox_lag_ms) = tokio::join!(
            self.engine.live_hold_records(),
            self.engine.not_persisted_per_minute(),
            self.ledger.sku_count(),
            self.outbox_lag(at),
        );
        let oldest = at.timestamp() / 60 - crate::engine::TALLY_MINUTES;
        Ok(Overview {
            skus: skus.ok(),
            live_holds: live_holds?,
            outbox_lag_ms: outbox_lag_ms?,
            not_persisted_per_minute: per_minute?
                .into_iter()
                .filter(|(minute, _)| *minute > oldest)
                .collect(),
            at,
        })
    }

    /// The age at `now` of the oldest outbox entry of any partition that
    /// Postgres does not have (0: none); None while Postgres is away. A few
    /// partitions at a time, so the overview never takes the whole pool.
    async fn outbox_lag(&self, now: DateTime<Utc>) -> Result<Option<i64>, EngineError> {
        let lags: Vec<Option<i64>> = stream::iter(self.engine.partitions().all())
            .map(|p| self.partition_lag(p, now))
            .buffer_unordered(LAG_PARTITIONS_AT_ONCE)
            .try_collect()
            .await?;
        Ok(lags
            .into_iter()
            .try_fold(0, |most, lag| lag.map(|lag| most.max(lag))))
    }

    /// The age at `now` of partition `p`'s oldest outbox entry Postgres
    /// does not have (0: none); None while Postgres is away. Walks the outbox
    /// after the drain's watermark a page at a time, asking Postgres which
    /// of each page's entries commits recorded themselves. After
    /// [`LAG_WALK`] entries all recorded, the last one read: the lag is then
    /// at most its age.
    async fn partition_lag(
        &self,
        p: Partition,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, EngineError> {
        let age = |id: StreamId| Some((now.timestamp_millis() - id.ms).max(0));
        let Ok(mut after) = self.ledger.watermark(p).await else {
            return Ok(None);
        };
        let mut read = 0;
        loop {
            let ids = self.engine.outbox_ids_after(p, after, LAG_PAGE).await?;
            let Some(&last) = ids.last() else {
                return Ok(Some(0));
            };
            let Ok(applied) = self.ledger.applied_between(p, after, last).await else {
                return Ok(None);
            };
            if let Some(&first) = ids.iter().find(|id| !applied.contains(id)) {
                return Ok(age(first));
            }
            read += ids.len();
            if ids.len() < LAG_PAGE {
                return Ok(Some(0));
            }
            if read >= LAG_WALK {
                return Ok(age(last));
            }
            after = last;
        }
    }

    /// Creates or updates a SKU and persists the change.
    pub async fn put_sku(&self, sku: &Sku, req: &PutSkuRequest) -> Result<SkuPut, EngineError> {
        let put = self.engine.put_sku(sku, req).await?;
        if let Some(entry) = put.outbox {
            // Not persisted now means persisted by the drain: the change is
            // in the outbox either way, so the answer does not depend on it.
            self.persist(entry).await;
        }
        Ok(put)
    }

    /// Adjusts a SKU's on_hand once per adjustment id. The SKU view, and
    /// whether this call applied it (false: a repeat of the same adjustment).
    pub async fn adjust(
        &self,
        sku: &Sku,
        req: &AdjustmentRequest,
    ) -> Result<(SkuView, bool), EngineError> {
        // Redis remembers adjustment ids for days, the ledger for good.
        let before = match self.ledger.adjustment(&req.adjustment_id).await {
            Ok(found) => found,
            Err(e) => return Err(EngineError::Unavailable(e.into())),
        };
        let applied = match before {
            Some((s, d)) => Adjusted::Before(Sku::parse(&s).map_err(anyhow::Error::msg)?, d),
            None => self.engine.adjust(sku, req).await?,
        };
        match applied {
            Adjusted::Applied(view, entry) => {
                self.persist(entry).await;
                Ok((view, true))
            }
            Adjusted::Before(s, d) if &s == sku && d == req.delta => {
                let view = self.engine.sku(sku).await?.ok_or(Rejection::SkuNotFound)?;
                Ok((view, false))
            }
            Adjusted::Before(..) => Err(Rejection::IdReused.into()),
        }
    }

    /// Records a return and, with restock, puts its units back. The order
    /// with its returned quantities, and whether this call recorded it.
    pub async fn return_order(
        &self,
        order_id: &OrderId,
        req: &ReturnRequest,
    ) -> Result<(Order, bool), EngineError> {
        let recorded = self
            .ledger
            .record_return(order_id, req)
            .await
            .map_err(unavailable)?;
        let (lines, restock, fresh) = match recorded {
            ReturnRecorded::Recorded => (req.lines.clone(), req.restock, true),
            ReturnRecorded::Before {
                lines,
                restock_pending,
            } => (lines, restock_pending, false),
            ReturnRecorded::Exceeds(lines) => {
                return Err(Rejection::ReturnExceedsOrder(lines).into())
            }
            ReturnRecorded::IdReused => return Err(Rejection::IdReused.into()),
            ReturnRecorded::OrderNotFound => {
                return Err(match self.engine.order(order_id).await? {
                    // Committed but not in the ledger yet: retry shortly.
                    Some(_) => {
                        EngineError::Unavailable(anyhow::anyhow!("the order is not persisted yet"))
                    }
                    None => Rejection::OrderNotFound.into(),
                });
            }
        };
        if restock {
            self.restock(&req.return_id, order_id, &lines).await?;
        }
        let order = self.ledger.order(order_id).await.map_err(unavailable)?;
        Ok((order.ok_or(Rejection::OrderNotFound)?, fresh))
    }

    /// Puts returned units back in Redis (once per return id) and persists it.
    pub async fn restock(
        &self,
        return_id: &str,
        order_id: &OrderId,
        lines: &[(Sku, i64)],
    ) -> Result<(), EngineError> {
        let pools = self
            .ledger
            .return_pools(return_id)
            .await
            .map_err(unavailable)?;
        for entry in self
            .engine
            .restock(return_id, order_id, lines, &pools)
            .await?
        {
            self.persist(entry).await;
        }
        Ok(())
    }

    /// Writes one outbox entry to the ledger; false if that failed (the
    /// outbox drain will retry it).
    async fn persist(&self, (p, entry): EntryRef) -> bool {
        match self.engine.outbox_entry(p, entry).await {
            Ok(Some(e)) => self.recorder.record(e).await,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = ?e, partition = %p, %entry,
                    "could not read outbox entry to persist it");
                false
            }
        }
    }

    /// An order: from Postgres, else the pending record in Redis.
    pub async fn order(&self, order_id: &OrderId) -> Result<Option<Order>, EngineError> {
        match self.ledger.order(order_id).await {
            Ok(Some(order)) => return Ok(Some(order)),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = ?e, "ledger unavailable; looking for a pending order"),
        }
        self.engine.order(order_id).await
    }

    /// A reservation as stored in Redis; one that Redis does not know, or
    /// shows as ended, is committed if the ledger has its order (Redis lost
    /// the sale, or forgot the hold a day after it ended).
    pub async fn reservation(&self, id: &ReservationId) -> Result<Option<Hold>, EngineError> {
        let hold = self.engine.hold(id).await?;
        let ended = hold
            .as_ref()
            .is_none_or(|h| matches!(h.status, HoldStatus::Released | HoldStatus::Expired));
        if !ended {
            return Ok(hold);
        }
        match self.ledger.order_for_reservation(id).await {
            Ok(Some(order)) => Ok(Some(order.as_committed_hold())),
            Ok(None) if hold.is_none() && self.engine.maybe_lost(id).await? => {
                Err(Rejection::Lost.into())
            }
            Ok(None) => Ok(hold),
            Err(e) => {
                tracing::warn!(error = ?e, "ledger unavailable; answering from Redis alone");
                Ok(hold)
            }
        }
    }
}

fn unavailable(e: LedgerError) -> EngineError {
    match e {
        LedgerError::Unavailable(e) => EngineError::Unavailable(e.into()),
        LedgerError::Internal(e) => EngineError::Internal(e),
    }
}
