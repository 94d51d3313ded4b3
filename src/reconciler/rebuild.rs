//! Rebuild and reconciliation: the live counts in Redis against what the
//! ledger, the outbox entries not yet persisted and the live holds say.
//!
//! Expected `on_hand` of a SKU = its persisted `on_hand` (read in one
//! snapshot with the outbox watermark) + the deltas of outbox entries after
//! the watermark that the snapshot had not applied. The entries are read in
//! pages up to some id R; each batch script adds the entries after R itself,
//! atomically with its comparison, so a commit made meanwhile is counted
//! exactly once. Expected `held` works the same way: the live holds are read
//! once per partition, outside any script, as of the start of a watch under
//! which every script that changes a hold keeps how it was
//! (`Engine::hold_index`); each batch script adds, atomically with its
//! comparison, the change of every hold changed since. So no script reads
//! every live hold, and a hold made or changed meanwhile counts once. See
//! DESIGN.md, "Rebuild and reconciliation".

use crate::domain::{split_pool_account, Drift, Partition, ReconcileMode, Sku, StreamId};
use crate::engine::{Engine, HoldIndex, LeaseOp, ServerState};
use crate::ledger::{Bought, Ledger, SkuRecord, Snapshot};
use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// SKUs compared per script call: big enough to be fast, small enough that
/// one call keeps Redis busy for milliseconds, not seconds.
const BATCH: usize = 2000;
/// Holds changed since a reconciliation's watch began past which it reads
/// the live holds again under a new one (or past a quarter of them): every
/// batch reads each changed hold, reading them all is a few MGETs.
const REWATCH_AFTER: usize = 2000;
/// Outbox entries read per round trip.
const PAGE: usize = 1000;
/// How long a rebuild lease lasts unless its holder renews it (every
/// `RENEW_EVERY` while it rebuilds): a holder that dies blocks the others'
/// rebuild this long at most. The lease ends with the rebuild.
pub const REBUILD_LEASE: Duration = Duration::from_secs(5);
const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How often an instance waiting for another's rebuild looks again.
const WAIT_FOR_REBUILD: Duration = Duration::from_millis(100);

/// When, after a rebuild, its partitions are looked at again for sales that
/// reached the ledger only after the rebuild read it: a commit whose entry
/// was being persisted while Redis restarted without it (the group commit
/// waits for Postgres up to its acquire timeout, 2 s).
const SETTLE_LATE_AFTER: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

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
        let all: BTreeSet<Partition> = self.engine.partitions().all().collect();
        Ok(self
            .reconcile_as(mode, only, &all, "", "reconcile")
            .await?
            .0)
    }

    /// As `reconcile`, over the SKUs of `partitions`; a rebuild passes its
    /// leases' `owner`; repair rows start with `why`. Also says which of the
    /// partitions have SKUs.
    async fn reconcile_as(
        &self,
        mode: ReconcileMode,
        only: Option<&[Sku]>,
        partitions: &BTreeSet<Partition>,
        owner: &str,
        why: &str,
    ) -> anyhow::Result<(Report, BTreeSet<Partition>)> {
        let started = Instant::now();
        let names: Option<Vec<String>> = only.map(|s| s.iter().map(|s| s.to_string()).collect());
        let spread: Vec<String> = self
            .engine
            .spread_skus()
            .into_iter()
            .map(|(s, _)| s.to_string())
            .collect();
        let snapshot = self
            .ledger
            .snapshot(names.as_deref(), &spread)
            .await
            .context("reading the ledger")?;
        let mut by_partition: BTreeMap<Partition, Vec<SkuRecord>> = BTreeMap::new();
        let mut checked = 0;
        for record in &snapshot.skus {
            for (p, share) in self.shares(record, &snapshot) {
                if partitions.contains(&p) {
                    let account = split_pool_account(&share.sku).is_some();
                    checked += usize::from(share.bucket == 0 && !account);
                    by_partition.entry(p).or_default().push(share);
                }
            }
        }
        let mut drifted = Vec::new();
        let with_skus: BTreeSet<Partition> = by_partition.keys().copied().collect();
        for (p, mut records) in by_partition {
            let (read_up_to, pending) = self.pending_deltas(p, &snapshot).await?;
            records.extend(new_accounts(&records, &pending));
            let records: Vec<&SkuRecord> = records.iter().collect();
            let mut index = self.engine.hold_index(p).await?;
            let compared = self
                .compare_partition(p, mode, read_up_to, owner, &records, &pending, &mut index)
                .await;
            // Best effort: a watch nobody renews ends by itself.
            let _ = self.engine.end_watch(p, &index).await;
            drifted.extend(compared?);
        }
        let drifted = add_up_buckets(drifted);
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
                        d.account(),
                        d.expected_on_hand,
                        format!(
                            "{why}: live on_hand {was} -> {}, held {} -> {}",
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
            checked,
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
        Ok((report, with_skus))
    }

    /// The record of each partition a SKU lives in: its own, and for a SKU
    /// spread over buckets each bucket's, with that bucket's share of
    /// on_hand (the movements made there; bucket 0 has the rest).
    fn shares(&self, record: &SkuRecord, snapshot: &Snapshot) -> Vec<(Partition, SkuRecord)> {
        let parts = self.engine.partitions();
        // A channel's allocation lives with its SKU.
        let own = parts
            .of_name(split_pool_account(&record.sku).map_or(record.sku.as_str(), |(sku, _)| sku));
        // Redis knows a spread first (the ledger a drain step later, or
        // after Postgres is back): the wider of the two.
        let live = self
            .engine
            .spread_of_name(&record.sku)
            .filter(|l| i32::from(l.span) > record.bucket_span);
        let sku = Sku::parse(&record.sku);
        let (Ok(sku), true) = (sku, record.bucket_span > 1 || live.is_some()) else {
            return vec![(own, record.clone())];
        };
        let mut record = record.clone();
        if let Some(live) = live {
            record.bucket_span = i32::from(live.span);
            record.buckets = i32::from(live.buckets);
        }
        let record = &record;
        let mut out: Vec<(Partition, SkuRecord)> = Vec::new();
        let mut rest = record.on_hand;
        let span = (record.bucket_span as u16).min(parts.count());
        for b in 1..span {
            let p = parts.bucket(&sku, b);
            let share = snapshot
                .shares
                .get(&(record.sku.clone(), p))
                .copied()
                .unwrap_or(0);
            rest -= share;
            let mut r = record.clone();
            r.on_hand = share;
            r.bucket = b;
            // Only bucket 0 sells beyond its units.
            r.backorder_limit = 0;
            out.push((p, r));
        }
        let mut first = record.clone();
        first.on_hand = rest;
        out.insert(0, (own, first));
        out
    }

    /// Compares `records` of partition `p` in batches against the live
    /// holds of `index`; reads the holds again under a new watch when many
    /// changed since (each batch reads every hold changed since its
    /// watch began) or the watch was abandoned.
    #[allow(clippy::too_many_arguments)]
    async fn compare_partition(
        &self,
        p: Partition,
        mode: ReconcileMode,
        read_up_to: StreamId,
        owner: &str,
        records: &[&SkuRecord],
        pending: &HashMap<String, i64>,
        index: &mut HoldIndex,
    ) -> anyhow::Result<Vec<Drift>> {
        let mut drifted = Vec::new();
        for chunk in batches(records, BATCH) {
            let rows: Vec<_> = chunk
                .iter()
                .map(|r| (*r, r.on_hand + pending.get(&r.sku).copied().unwrap_or(0)))
                .collect();
            let mut tries = 0;
            let changed = loop {
                let batch = self
                    .engine
                    .reconcile_batch(p, mode, read_up_to, owner, index, &rows)
                    .await?;
                if let Some((found, changed)) = batch {
                    drifted.extend(found);
                    break changed;
                }
                // Abandoned (a stall of a minute): changes since may be
                // unknown; read the holds again.
                tries += 1;
                anyhow::ensure!(
                    tries < 3,
                    "the live holds of partition {p} could not be read under one watch"
                );
                *index = self.engine.hold_index(p).await?;
            };
            if changed > REWATCH_AFTER.max(index.holds() / 4) {
                let fresh = self.engine.hold_index(p).await?;
                let old = std::mem::replace(index, fresh);
                let _ = self.engine.end_watch(p, &old).await;
            }
        }
        Ok(drifted)
    }

    /// The on_hand deltas of partition `p`'s outbox entries the snapshot
    /// has not applied, per SKU, and the last entry read.
    async fn pending_deltas(
        &self,
        p: Partition,
        snapshot: &Snapshot,
    ) -> anyhow::Result<(StreamId, HashMap<String, i64>)> {
        let mut deltas: HashMap<String, i64> = HashMap::new();
        let mut cursor = snapshot.watermarks.get(&p).copied().unwrap_or_default();
        loop {
            let page = self.engine.outbox_after(p, cursor, PAGE).await?;
            for entry in &page {
                cursor = entry.id;
                if snapshot.applied_after.contains(&(p, entry.id)) {
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

    /// Start-up: partitions of Redis that are not rebuilt (new, lost their
    /// data, or restarted) are rebuilt (see `ensure_rebuilt`); a Redis with
    /// live data is reconciled in repair mode. Returns when Redis is ready.
    pub async fn start_up(&self, instance: &str) -> anyhow::Result<Option<Report>> {
        match self.ensure_rebuilt(instance).await? {
            Some(report) => Ok(Some(report)),
            None => self.reconcile(ReconcileMode::Repair, None).await.map(Some),
        }
    }

    /// Returns once every partition of Redis holds the state rebuilt from
    /// the ledger. A partition whose server restarted (or failed over)
    /// since its rebuild is treated as not rebuilt: it may have lost its
    /// last writes. Each partition is rebuilt by one instance, under a lease
    /// it renews while it works and releases when done, while that
    /// partition's write scripts refuse to run (the other partitions keep
    /// serving); instances wait for the partitions others rebuild. The
    /// report, if this call rebuilt any.
    pub async fn ensure_rebuilt(&self, instance: &str) -> anyhow::Result<Option<Report>> {
        if let Err(mismatch) = self.engine.check_layout().await? {
            anyhow::bail!(mismatch);
        }
        let mut waited = false;
        let mut report: Option<Report> = None;
        loop {
            let mut taken = BTreeMap::new();
            let mut others = false;
            for p in self.engine.partitions().all() {
                match self.engine.server_state(p).await? {
                    ServerState::Ready => {}
                    ServerState::Restarted { marker } => {
                        tracing::warn!(partition = %p,
                            "Redis restarted or failed over since this partition was rebuilt \
                             (it may have lost its last writes); rebuilding it from the ledger");
                        self.engine.forget_rebuild(p, &marker).await?;
                        others = true; // looked at again at once
                    }
                    ServerState::NotRebuilt { run_id } => {
                        if self
                            .engine
                            .rebuild_lease(p, LeaseOp::Acquire, instance, REBUILD_LEASE)
                            .await?
                        {
                            taken.insert(p, run_id);
                        } else {
                            others = true;
                        }
                    }
                }
            }
            if !taken.is_empty() {
                let (rebuilt, lost) = self.rebuild_under_lease(instance, &taken).await?;
                // Partitions that had live state may miss sales still on
                // their way to the ledger; new ones have nothing to miss.
                if !lost.is_empty() {
                    self.settle_late_in_background(lost.into_iter().collect());
                }
                report = Some(match report {
                    None => rebuilt,
                    Some(mut r) => {
                        r.checked += rebuilt.checked;
                        r.drifted.extend(rebuilt.drifted);
                        r.duration += rebuilt.duration;
                        r
                    }
                });
                continue;
            }
            if !others {
                return Ok(report);
            }
            if !waited {
                tracing::info!("another instance is rebuilding part of Redis; waiting");
                waited = true;
            }
            tokio::time::sleep(WAIT_FOR_REBUILD).await;
        }
    }

    /// At the times of `SETTLE_LATE_AFTER` after now, brings the rebuilt
    /// `partitions` up to sales the ledger got after the rebuild read it:
    /// a hold still held there whose order the ledger has is sold
    /// (`settle_late`), then the partitions are reconciled in repair mode,
    /// which also corrects on_hand for such a sale whose hold Redis lost
    /// too (repair rows say "after a rebuild").
    fn settle_late_in_background(&self, partitions: Vec<Partition>) {
        let this = self.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let set: BTreeSet<Partition> = partitions.iter().copied().collect();
            for after in SETTLE_LATE_AFTER {
                tokio::time::sleep_until(start + after).await;
                let pass = async {
                    this.settle_late(&partitions).await?;
                    this.reconcile_as(ReconcileMode::Repair, None, &set, "", "after a rebuild")
                        .await
                };
                match pass.await {
                    Ok((report, _)) if !report.drifted.is_empty() => tracing::warn!(
                        drifted = report.drifted.len(),
                        "sales the rebuild missed reached the ledger; live counts repaired"
                    ),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = ?e, "could not look for sales the rebuild missed")
                    }
                }
            }
        });
    }

    /// Sells the holds of `partitions` that Redis shows as held while the
    /// ledger has their order: sales the partition's rebuild missed because
    /// they reached Postgres after it read the ledger. How many.
    pub async fn settle_late(&self, partitions: &[Partition]) -> anyhow::Result<usize> {
        let mut settled = 0;
        for p in partitions {
            let live = self.engine.live_holds(*p).await?;
            for chunk in live.chunks(1000) {
                for found in self.ledger.orders_of_reservations(chunk).await? {
                    // Rare: read the order again with its lines.
                    let Some(order) = self.ledger.order(&found.order_id).await? else {
                        continue;
                    };
                    if self.engine.settle_late(*p, &order).await? {
                        tracing::warn!(reservation = %order.reservation_id, order = %order.order_id,
                            partition = %p, "a sale the rebuild missed reached the ledger; sold in Redis too");
                        settled += 1;
                    }
                }
            }
        }
        Ok(settled)
    }

    /// Rebuilds the partitions `taken` (with the run ids of their servers)
    /// while renewing their leases; stops if a lease is lost, and gives the
    /// leases up if the rebuild fails, so the next attempt (this
    /// instance's or another's) starts at once. Also says which of them had
    /// live state.
    async fn rebuild_under_lease(
        &self,
        owner: &str,
        taken: &BTreeMap<Partition, String>,
    ) -> anyhow::Result<(Report, BTreeSet<Partition>)> {
        let renew = async {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                for p in taken.keys() {
                    match self
                        .engine
                        .rebuild_lease(*p, LeaseOp::Renew, owner, REBUILD_LEASE)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            return anyhow::anyhow!("the rebuild lease of partition {p} ran out")
                        }
                        Err(e) => tracing::warn!(error = ?e, partition = %p,
                            "could not renew the rebuild lease"),
                    }
                }
            }
        };
        let rebuilt = tokio::select! {
            rebuilt = self.rebuild(owner, taken) => rebuilt,
            lost = renew => Err(lost),
        };
        // Each partition is ready (and its lease released) only after all
        // of them are rebuilt, so the renewals above never meet a lease
        // released by its own rebuild. The leases were renewed a moment ago.
        let result = match rebuilt {
            Ok((report, lost)) => self
                .mark_ready(owner, taken, lost.clone())
                .await
                .map(|()| (report, lost)),
            Err(e) => Err(e),
        };
        if result.is_err() {
            for p in taken.keys() {
                let _ = self
                    .engine
                    .rebuild_lease(*p, LeaseOp::Release, owner, Duration::ZERO)
                    .await;
            }
        }
        result
    }

    /// Marks the partitions `taken` ready, each with the time its holds
    /// may have been lost if it is in `lost`.
    async fn mark_ready(
        &self,
        owner: &str,
        taken: &BTreeMap<Partition, String>,
        lost: BTreeSet<Partition>,
    ) -> anyhow::Result<()> {
        let lost_at = chrono::Utc::now().timestamp_millis();
        for (p, run_id) in taken {
            let lost = lost.contains(p).then_some(lost_at);
            if !self.engine.mark_ready(*p, owner, run_id, lost).await? {
                anyhow::bail!(
                    "the rebuild lease of partition {p} ran out before the rebuild was done"
                );
            }
        }
        Ok(())
    }

    /// The rebuild itself; every write is fenced by the leases of `owner`.
    /// Also says which partitions had live state (their holds may be lost).
    async fn rebuild(
        &self,
        owner: &str,
        taken: &BTreeMap<Partition, String>,
    ) -> anyhow::Result<(Report, BTreeSet<Partition>)> {
        let partitions: BTreeSet<Partition> = taken.keys().copied().collect();
        tracing::warn!(partitions = ?partitions,
            "partitions of Redis without rebuilt state (new, restarted or lost data); rebuilding");
        // A Redis that came back without its last moments may show holds
        // as held whose sale the ledger has: settle them first.
        for p in &partitions {
            let live = self.engine.live_holds(*p).await?;
            for chunk in live.chunks(1000) {
                for order in self.ledger.orders_of_reservations(chunk).await? {
                    if self.engine.settle(*p, owner, &order).await? {
                        tracing::warn!(reservation = %order.reservation_id, order = %order.order_id,
                            partition = %p, "a committed hold came back as held; settled from the ledger");
                    }
                }
            }
        }
        let (report, with_skus) = self
            .reconcile_as(ReconcileMode::Rebuild, None, &partitions, owner, "rebuild")
            .await?;
        let bought = self.ledger.bought_of_limited_skus().await?;
        let parts = self.engine.partitions();
        // A customer's count of a spread SKU lives in the customer's bucket.
        let home_of = |b: &Bought| match Sku::parse(&b.sku) {
            Ok(sku) if b.buckets > 1 => parts.bucket(
                &sku,
                parts.bucket_of_customer(&b.customer_id, b.buckets as u16),
            ),
            _ => parts.of_name(&b.sku),
        };
        for p in taken.keys() {
            let mine: Vec<_> = bought
                .iter()
                .filter(|b| home_of(b) == *p)
                .cloned()
                .collect();
            self.engine.set_customer_counts(*p, owner, &mine).await?;
        }
        tracing::info!(
            partitions = partitions.len(),
            skus = report.checked,
            customers = bought.len(),
            ms = report.duration.as_millis() as u64,
            "Redis rebuilt from the ledger"
        );
        // A partition the ledger has SKUs of had live state before: holds
        // made in it may be lost.
        Ok((report, with_skus))
    }
}

/// An allocation made after the snapshot (its account not in the ledger
/// yet, its units moved by an outbox entry not recorded yet) is compared
/// like any other: a record of no units, which the entry's delta makes its
/// share. Without it the SKU's shared pool would be expected to still have
/// those units.
fn new_accounts(records: &[SkuRecord], pending: &HashMap<String, i64>) -> Vec<SkuRecord> {
    let known: BTreeSet<&str> = records.iter().map(|r| r.sku.as_str()).collect();
    pending
        .keys()
        .filter(|name| !known.contains(name.as_str()))
        .filter_map(|name| {
            let (sku, _) = split_pool_account(name)?;
            records.iter().find(|r| r.sku == sku && r.bucket == 0)?;
            Some(SkuRecord::plain(name, 0))
        })
        .collect()
}

/// `records` in batches of about `size`, each SKU in one batch with its
/// allocations' accounts (the script counts its shared pool with them).
fn batches<'a>(records: &[&'a SkuRecord], size: usize) -> Vec<Vec<&'a SkuRecord>> {
    let parent = |r: &SkuRecord| -> String {
        split_pool_account(&r.sku)
            .map_or(r.sku.as_str(), |(sku, _)| sku)
            .to_owned()
    };
    let mut sorted = records.to_vec();
    sorted.sort_by_cached_key(|r| (parent(r), r.sku.clone()));
    let mut out: Vec<Vec<&SkuRecord>> = Vec::new();
    let mut batch: Vec<&SkuRecord> = Vec::new();
    for r in sorted {
        if batch.len() >= size && batch.last().is_some_and(|l| parent(l) != parent(r)) {
            out.push(std::mem::take(&mut batch));
        }
        batch.push(r);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

/// One drift per SKU (and allocation): the buckets of a spread SKU that
/// drifted, added up.
fn add_up_buckets(drifted: Vec<Drift>) -> Vec<Drift> {
    let mut out: Vec<Drift> = Vec::with_capacity(drifted.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for d in drifted {
        match at.get(&d.account()) {
            Some(i) => {
                let sum = &mut out[*i];
                sum.expected_on_hand += d.expected_on_hand;
                sum.expected_held += d.expected_held;
                sum.actual_held += d.actual_held;
                sum.actual_on_hand = match (sum.actual_on_hand, d.actual_on_hand) {
                    (Some(a), Some(b)) => Some(a + b),
                    (a, b) => a.or(b),
                };
            }
            None => {
                at.insert(d.account(), out.len());
                out.push(d);
            }
        }
    }
    out
}
