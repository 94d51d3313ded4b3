//! Rebuild and reconciliation: the live counts in Redis against what the
//! ledger, the outbox entries not yet persisted and the live holds say.
//!
//! Expected `on_hand` of a SKU = its persisted `on_hand` (read in one
//! snapshot with the outbox watermark) + the deltas of outbox entries after
//! the watermark that the snapshot had not applied. The entries are read in
//! pages up to some id R; each batch script adds the entries after R itself,
//! atomically with its comparison, so a commit made meanwhile is counted
//! exactly once. Expected `held` = the sum over live holds, inside the same
//! script. See DESIGN.md, "Rebuild and reconciliation".

use crate::domain::{Drift, ReconcileMode, Sku, StreamId};
use crate::engine::{Engine, LeaseOp, ServerState};
use crate::ledger::{Ledger, Snapshot};
use anyhow::Context;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// SKUs compared per script call: big enough to be fast, small enough that
/// one call keeps Redis busy for milliseconds, not seconds.
const BATCH: usize = 2000;
/// Outbox entries read per round trip.
const PAGE: usize = 1000;
/// How long a rebuild lease lasts unless its holder renews it (every
/// `RENEW_EVERY` while it rebuilds): a holder that dies blocks the others'
/// rebuild this long at most. The lease ends with the rebuild.
pub const REBUILD_LEASE: Duration = Duration::from_secs(5);
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often an instance waiting for another's rebuild looks again.
const WAIT_FOR_REBUILD: Duration = Duration::from_millis(100);

/// What a reconciliation found and did.
#[derive(Debug, Clone)]
pub struct Report {
    /// SKUs compared.
    pub checked: usize,
    /// SKUs whose live counts differed.
    pub drifted: Vec<Drift>,
    /// Whether drifted counts were set to the expected values.
    pub repaired: bool,
    /// Wall time taken.
    pub duration: Duration,
}

/// Rebuilds and reconciles the live counts.
#[derive(Clone)]
pub struct Reconciler {
    engine: Engine,
    ledger: Ledger,
}

impl Reconciler {
    /// A reconciler over `engine` and `ledger`.
    pub fn new(engine: Engine, ledger: Ledger) -> Self {
        Reconciler { engine, ledger }
    }

    /// The engine it reconciles.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compares the live counts of `only` (all SKUs when `None`) with the
    /// expected ones and, unless `mode` is check, sets the drifted ones;
    /// every repair of an existing SKU is a `repair` row in the ledger.
    #[tracing::instrument(skip_all, fields(mode = mode.as_str()))]
    pub async fn reconcile(
        &self,
        mode: ReconcileMode,
        only: Option<&[Sku]>,
    ) -> anyhow::Result<Report> {
        self.reconcile_as(mode, only, "").await
    }

    /// As `reconcile`; a rebuild passes its lease's `owner`.
    async fn reconcile_as(
        &self,
        mode: ReconcileMode,
        only: Option<&[Sku]>,
        owner: &str,
    ) -> anyhow::Result<Report> {
        let started = Instant::now();
        let names: Option<Vec<String>> = only.map(|s| s.iter().map(|s| s.to_string()).collect());
        let snapshot = self
            .ledger
            .snapshot(names.as_deref())
            .await
            .context("reading the ledger")?;
        let (read_up_to, pending) = self.pending_deltas(&snapshot).await?;

        let mut drifted = Vec::new();
        for chunk in snapshot.skus.chunks(BATCH) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|r| (r, r.on_hand + pending.get(&r.sku).copied().unwrap_or(0)))
                .collect();
            drifted.extend(
                self.engine
                    .reconcile_batch(mode, read_up_to, owner, &rows)
                    .await?,
            );
        }
        if mode != ReconcileMode::Check {
            let repairs: Vec<(String, i64, String)> = drifted
                .iter()
                // Restoring a Redis that lost everything is a rebuild, not
                // a repair of each SKU: only SKUs found wrong get a row.
                .filter(|d| mode == ReconcileMode::Repair || d.actual_on_hand.is_some())
                .map(|d| {
                    let was = d
                        .actual_on_hand
                        .map_or("missing".to_owned(), |n| n.to_string());
                    (
                        d.sku.to_string(),
                        d.expected_on_hand,
                        format!(
                            "reconcile: live on_hand {was} -> {}, held {} -> {}",
                            d.expected_on_hand, d.actual_held, d.expected_held
                        ),
                    )
                })
                .collect();
            self.ledger
                .record_repairs(&repairs)
                .await
                .context("recording repairs")?;
        }
        metrics::counter!(crate::metrics::DRIFT_FOUND).increment(drifted.len() as u64);
        let report = Report {
            checked: snapshot.skus.len(),
            drifted,
            repaired: mode != ReconcileMode::Check,
            duration: started.elapsed(),
        };
        tracing::info!(
            checked = report.checked,
            drifted = report.drifted.len(),
            ms = report.duration.as_millis() as u64,
            "reconciliation done"
        );
        Ok(report)
    }

    /// The on_hand deltas of outbox entries the snapshot has not applied,
    /// per SKU, and the last entry read.
    async fn pending_deltas(
        &self,
        snapshot: &Snapshot,
    ) -> anyhow::Result<(StreamId, HashMap<String, i64>)> {
        let mut deltas: HashMap<String, i64> = HashMap::new();
        let mut cursor = snapshot.watermark;
        loop {
            let page = self.engine.outbox_after(cursor, PAGE).await?;
            for entry in &page {
                cursor = entry.id;
                if snapshot.applied_after.contains(&entry.id) {
                    continue;
                }
                for (sku, delta) in entry.event.on_hand_deltas() {
                    *deltas.entry(sku.to_string()).or_default() += delta;
                }
            }
            if page.len() < PAGE {
                return Ok((cursor, deltas));
            }
        }
    }

    /// Start-up: a Redis that is not rebuilt (new, lost its data, or
    /// restarted) is rebuilt (see `ensure_rebuilt`); a Redis with live data
    /// is reconciled in repair mode. Returns when Redis is ready.
    pub async fn start_up(&self, instance: &str) -> anyhow::Result<Option<Report>> {
        match self.ensure_rebuilt(instance).await? {
            Some(report) => Ok(Some(report)),
            None => self.reconcile(ReconcileMode::Repair, None).await.map(Some),
        }
    }

    /// Returns once Redis holds the state rebuilt from the ledger. A Redis
    /// that restarted since its rebuild is treated as not rebuilt (it may
    /// have lost its last writes). One instance rebuilds, under a lease it
    /// renews while it works and releases when done, while write scripts
    /// refuse to run; the others wait for it. The report, if this call
    /// rebuilt.
    pub async fn ensure_rebuilt(&self, instance: &str) -> anyhow::Result<Option<Report>> {
        let mut waited = false;
        loop {
            match self.engine.server_state().await? {
                ServerState::Ready => return Ok(None),
                ServerState::Restarted { marker } => {
                    tracing::warn!(
                        "Redis restarted since it was rebuilt (it may have lost its last writes); \
                         rebuilding its live counts from the ledger"
                    );
                    self.engine.forget_rebuild(&marker).await?;
                }
                ServerState::NotRebuilt { run_id } => {
                    if self
                        .engine
                        .rebuild_lease(LeaseOp::Acquire, instance, REBUILD_LEASE)
                        .await?
                    {
                        return self.rebuild_under_lease(instance, &run_id).await.map(Some);
                    }
                    if !waited {
                        tracing::info!("another instance is rebuilding Redis; waiting");
                        waited = true;
                    }
                    tokio::time::sleep(WAIT_FOR_REBUILD).await;
                }
            }
        }
    }

    /// Rebuilds while renewing the lease; stops if the lease is lost, and
    /// gives it up if the rebuild fails, so the next attempt (this
    /// instance's or another's) starts at once.
    async fn rebuild_under_lease(&self, owner: &str, run_id: &str) -> anyhow::Result<Report> {
        let renew = async {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match self
                    .engine
                    .rebuild_lease(LeaseOp::Renew, owner, REBUILD_LEASE)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return anyhow::anyhow!("the rebuild lease ran out"),
                    Err(e) => tracing::warn!(error = ?e, "could not renew the rebuild lease"),
                }
            }
        };
        let result = tokio::select! {
            rebuilt = self.rebuild(owner, run_id) => rebuilt,
            lost = renew => Err(lost),
        };
        if result.is_err() {
            let _ = self
                .engine
                .rebuild_lease(LeaseOp::Release, owner, Duration::ZERO)
                .await;
        }
        result
    }

    /// The rebuild itself; every write is fenced by the lease of `owner`.
    async fn rebuild(&self, owner: &str, run_id: &str) -> anyhow::Result<Report> {
        tracing::warn!("Redis has no rebuilt state (new, restarted or lost data); rebuilding");
        // A Redis that came back without its last moments may show holds
        // as held whose sale the ledger has: settle them first.
        let live = self.engine.live_holds().await?;
        for chunk in live.chunks(1000) {
            for order in self.ledger.orders_of_reservations(chunk).await? {
                if self.engine.settle(owner, &order).await? {
                    tracing::warn!(reservation = %order.reservation_id, order = %order.order_id,
                        "a committed hold came back as held; settled from the ledger");
                }
            }
        }
        let report = self
            .reconcile_as(ReconcileMode::Rebuild, None, owner)
            .await?;
        let bought = self.ledger.bought_of_limited_skus().await?;
        self.engine.set_customer_counts(owner, &bought).await?;
        if !self.engine.mark_ready(owner, run_id).await? {
            anyhow::bail!("the rebuild lease ran out before the rebuild was done");
        }
        tracing::info!(
            skus = report.checked,
            customers = bought.len(),
            ms = report.duration.as_millis() as u64,
            "Redis rebuilt from the ledger"
        );
        Ok(report)
    }
}
