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
use crate::engine::Engine;
use crate::ledger::{Ledger, Snapshot};
use anyhow::Context;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// SKUs compared per script call: big enough to be fast, small enough that
/// one call keeps Redis busy for milliseconds, not seconds.
const BATCH: usize = 2000;
/// Outbox entries read per round trip.
const PAGE: usize = 1000;
/// How long a rebuild lease lasts; renewed never, so sized for the largest
/// catalogue (a rebuild of 1 000 000 SKUs takes seconds).
const LEASE: Duration = Duration::from_secs(60);

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
            drifted.extend(self.engine.reconcile_batch(mode, read_up_to, &rows).await?);
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

    /// Start-up: a Redis that lost its data (no ready marker) is rebuilt by
    /// one instance holding the lease while write scripts refuse to run;
    /// the others wait for it. A Redis with live data is reconciled in
    /// repair mode. Returns when Redis is ready.
    pub async fn start_up(&self, instance: &str) -> anyhow::Result<Option<Report>> {
        loop {
            if self.engine.is_ready().await? {
                return self.reconcile(ReconcileMode::Repair, None).await.map(Some);
            }
            if self.engine.try_rebuild_lease(instance, LEASE).await? {
                let report = self.rebuild_lost_redis().await?;
                return Ok(Some(report));
            }
            tracing::info!("another instance is rebuilding Redis; waiting");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn rebuild_lost_redis(&self) -> anyhow::Result<Report> {
        tracing::warn!("Redis has no rebuilt state (new, restarted or lost data); rebuilding");
        // A Redis that came back without its last moments may show holds
        // as held whose sale the ledger has: settle them first.
        let live = self.engine.live_holds().await?;
        for chunk in live.chunks(1000) {
            for order in self.ledger.orders_of_reservations(chunk).await? {
                if self.engine.settle(&order).await? {
                    tracing::warn!(reservation = %order.reservation_id, order = %order.order_id,
                        "a committed hold came back as held; settled from the ledger");
                }
            }
        }
        let report = self.reconcile(ReconcileMode::Rebuild, None).await?;
        let bought = self.ledger.bought_of_limited_skus().await?;
        self.engine.set_customer_counts(&bought).await?;
        self.engine.mark_ready().await?;
        tracing::info!(
            skus = report.checked,
            customers = bought.len(),
            ms = report.duration.as_millis() as u64,
            "Redis rebuilt from the ledger"
        );
        Ok(report)
    }
}
