//! Hot-SKU buckets: a SKU set up with `buckets: N` spreads its stock over N
//! partitions, so a flash sale on it runs on N Redis cores.
//!
//! Bucket b of SKU S is partition `(own(S) + b) mod partitions`, where S has
//! its own counters (`avail`, `onhand`) and rules; bucket 0 is S's own
//! partition. Stock enters and leaves through bucket 0 (set-up, adjustments,
//! restocks) and moves between buckets by transfers (lua/transfer.lua): a
//! balancer keeps the buckets even, and a reserve that finds its bucket
//! short gathers units into it, so the last unit can still be sold. A line
//! lives in one bucket, so holds, commits and orders are those of any SKU.
//!
//! Where a line goes: a 1-line reserve without a customer goes to a bucket
//! at random and falls over to the others; a customer's lines of S always
//! go to the customer's bucket (where the per-customer count lives, so N
//! may only change while S has no limit); other baskets hold S in bucket 0.
//! An instance learns each SKU's buckets from Redis at start-up and once a
//! second (`refresh_spread`; an instance that set them knows at once). One
//! that does not know yet sends every line to bucket 0, which is right but
//! for a customer's line of a SKU with a per-customer limit: so a limit can
//! only be set a few seconds after the buckets changed (`put_sku.lua`), by
//! when every instance knows.

use super::{rejection_or_bug, Engine, EngineError, Reserved};
use crate::domain::{
    OutboxEntry, OutboxEvent, Partition, Rejection, ReservationId, ReserveRequest, Shortage, Sku,
    StreamId,
};
use anyhow::anyhow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a SKU's stock is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// Buckets new holds go to.
    pub buckets: u16,
    /// The most buckets it ever had: buckets `buckets..span` are emptied
    /// into bucket 0 by the balancer.
    pub span: u16,
}

/// A transfer taken and not done: its instance stopped between the steps.
#[derive(Debug, Clone)]
pub struct StalledTransfer {
    /// The transfer's id.
    pub id: String,
    /// The SKU.
    pub sku: Sku,
    /// Units taken.
    pub units: i64,
    /// The bucket they go to.
    pub to: Partition,
}

/// A transfer whose take is this old and not done is finished by the reaper.
const TRANSFER_STALLED: Duration = Duration::from_secs(5);

type Lines = Vec<(Sku, i64)>;

/// Records an outbox entry in the ledger now; whether it was.
pub type Durable =
    Arc<dyn Fn(OutboxEntry) -> futures_util::future::BoxFuture<'static, bool> + Send + Sync>;

impl Engine {
    /// Sets how a transfer's take is made durable before its units are
    /// given (the service's group commit). Without it (an engine on its
    /// own, as in some benchmarks) units are given at once.
    pub fn set_durable(&self, durable: Durable) {
        let _ = self.durable.set(durable);
    }

    /// How `sku` is spread, if over more than its own partition (as this
    /// instance last learnt).
    pub fn spread_of(&self, sku: &Sku) -> Option<Spread> {
        self.spread_of_name(sku.as_str())
    }

    /// As `spread_of`, by the SKU's name.
    pub fn spread_of_name(&self, sku: &str) -> Option<Spread> {
        let known = self.spread.read().unwrap_or_else(|e| e.into_inner());
        known.get(sku).map(|(s, _)| *s)
    }

    /// Learns every SKU spread over several partitions from Redis (each
    /// partition's `bk`, where its own SKUs' spread is kept). A partition
    /// that does not answer keeps what was known of its SKUs.
    pub async fn refresh_spread(&self) -> Result<(), EngineError> {
        let started = Instant::now();
        let parts: Vec<Partition> = self.partitions().all().collect();
        // With the partition's ready marker: one that lost its data (not
        // rebuilt yet) has no `bk` to go by.
        let reads = parts.iter().map(|p| {
            let keys = self.keys.part(*p);
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("EXISTS").arg(keys.ready());
            pipe.cmd("HGETALL").arg(keys.buckets());
            self.run(|mut conn| async move {
                pipe.query_async::<(bool, HashMap<String, String>)>(&mut conn)
                    .await
            })
        });
        let answers = futures_util::future::join_all(reads).await;
        let mut fresh: HashMap<String, Spread> = HashMap::new();
        let mut answered = std::collections::HashSet::new();
        let mut failed = None;
        for (p, answer) in parts.into_iter().zip(answers) {
            match answer {
                Ok((false, _)) => {}
                Ok((true, all)) => {
                    answered.insert(p);
                    for (sku, bk) in all {
                        let (buckets, span) = super::replies::buckets(&bk)?;
                        let spread = Spread {
                            buckets: buckets as u16,
                            span: span as u16,
                        };
                        fresh.insert(sku, spread);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        // What this instance set itself since the reads began is newer.
        let parts = self.partitions();
        let mut known = self.spread.write().unwrap_or_else(|e| e.into_inner());
        known.retain(|sku, (_, at)| *at > started || !answered.contains(&parts.of_name(sku)));
        for (sku, spread) in fresh.into_iter().filter(|(_, s)| s.span > 1) {
            known.entry(sku).or_insert((spread, started));
        }
        failed.map_or(Ok(()), Err)
    }

    /// What this instance knows of spread SKUs.
    pub fn spread_skus(&self) -> Vec<(Sku, Spread)> {
        let known = self.spread.read().unwrap_or_else(|e| e.into_inner());
        known
            .iter()
            .filter_map(|(s, (spread, _))| Some((Sku::parse(s).ok()?, *spread)))
            .collect()
    }

    pub(super) fn note_spread(&self, sku: &Sku, spread: Spread) {
        let mut known = self.spread.write().unwrap_or_else(|e| e.into_inner());
        if spread.span > 1 {
            known.insert(sku.to_string(), (spread, Instant::now()));
        } else {
            known.remove(sku.as_str());
        }
    }

    /// The partition of each bucket `0..n` of `sku`.
    pub(super) fn buckets(&self, sku: &Sku, n: u16) -> impl Iterator<Item = Partition> + '_ {
        let parts = self.partitions();
        let sku = sku.clone();
        (0..n).map(move |b| parts.bucket(&sku, b))
    }

    /// Where a new line of `sku` of `customer` goes in a basket.
    pub(super) fn place_line(&self, sku: &Sku, customer: Option<&str>) -> Partition {
        match (self.spread_of(sku), customer) {
            (Some(s), Some(c)) if s.buckets > 1 => {
                let parts = self.partitions();
                parts.bucket(sku, parts.bucket_of_customer(c, s.buckets))
            }
            _ => self.keys.of_sku(sku),
        }
    }

    /// New lines grouped by the partition each goes to.
    pub(super) fn place(
        &self,
        lines: &[(Sku, i64)],
        customer: Option<&str>,
    ) -> BTreeMap<Partition, Lines> {
        let none_spread = self
            .spread
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if none_spread {
            return self.by_partition(lines);
        }
        let mut groups: BTreeMap<Partition, Lines> = BTreeMap::new();
        for line in lines {
            groups
                .entry(self.place_line(&line.0, customer))
                .or_default()
                .push(line.clone());
        }
        groups
    }

    /// Holds every line of `req`, or nothing, under the id `id_for` gives
    /// for the home partition the lines' placement decides. `keyed`: the
    /// ids come from an idempotency key, so a retry finds the hold made.
    pub async fn reserve_new(
        &self,
        req: &ReserveRequest,
        keyed: bool,
        id_for: impl Fn(Partition) -> ReservationId,
    ) -> Result<(ReservationId, Reserved), EngineError> {
        if let [(sku, qty)] = req.lines.as_slice() {
            if let Some(spread) = self.spread_of(sku).filter(|s| s.buckets > 1) {
                if req.customer_id.is_none() {
                    return self
                        .reserve_anywhere(req, sku, *qty, spread, keyed, &id_for)
                        .await;
                }
            }
        }
        let groups = self.place(&req.lines, req.customer_id.as_deref());
        let home = groups.keys().max().copied().unwrap_or(Partition(0));
        let id = id_for(home);
        let first = self.reserve_in(&id, req, groups.clone()).await;
        let Err(EngineError::Rejected(Rejection::Insufficient(short))) = &first else {
            return first.map(|r| (id, r));
        };
        // Lines of spread SKUs short in their bucket: gather, then once more.
        let mut gathered = false;
        for s in short {
            if let Some(spread) = self.spread_of(&s.sku) {
                let at = self.place_line(&s.sku, req.customer_id.as_deref());
                gathered |= self.gather(&s.sku, spread, at, s.requested).await? > 0;
            }
        }
        let again = if gathered {
            self.reserve_in(&id, req, groups).await
        } else {
            first
        };
        match again {
            Err(EngineError::Rejected(Rejection::Insufficient(short))) => {
                Err(Rejection::Insufficient(self.with_totals(short).await?).into())
            }
            other => other.map(|r| (id, r)),
        }
    }

    /// A 1-line reserve of a spread SKU without a customer: a bucket at
    /// random, then the others in turn, then units gathered into the first.
    async fn reserve_anywhere(
        &self,
        req: &ReserveRequest,
        sku: &Sku,
        qty: i64,
        spread: Spread,
        keyed: bool,
        id_for: &impl Fn(Partition) -> ReservationId,
    ) -> Result<(ReservationId, Reserved), EngineError> {
        let parts: Vec<Partition> = self.buckets(sku, spread.buckets).collect();
        if keyed {
            // A retry: the hold may be in any bucket.
            for p in &parts {
                let id = id_for(*p);
                if let Some(hold) = self.hold(&id).await? {
                    let reserved = Reserved {
                        hold,
                        shortages: Vec::new(),
                        replayed: true,
                    };
                    return Ok((id, reserved));
                }
            }
        }
        let start = (uuid::Uuid::new_v4().as_u128() % parts.len() as u128) as usize;
        let line = || BTreeMap::from([(parts[start], vec![(sku.clone(), qty)])]);
        if !req.allow_partial {
            // A bucket whose partition cannot be reached (failing over,
            // being rebuilt) is passed over: the others serve.
            let mut unavailable = None;
            for k in 0..parts.len() {
                let p = parts[(start + k) % parts.len()];
                let id = id_for(p);
                let group = BTreeMap::from([(p, vec![(sku.clone(), qty)])]);
                match self.reserve_in(&id, req, group).await {
                    Err(EngineError::Rejected(Rejection::Insufficient(_))) => {}
                    // A bucket not set up yet (its SKU spread a moment ago).
                    Err(EngineError::Rejected(Rejection::UnknownSku(_)))
                        if p != self.keys.of_sku(sku) => {}
                    Err(e @ EngineError::Unavailable(_)) => unavailable = Some(e),
                    other => return other.map(|r| (id, r)),
                }
            }
            if let Some(e) = unavailable {
                return Err(e);
            }
        }
        // Short everywhere (or a partial hold, which takes what it can get
        // in one bucket): gather into the first bucket and hold there.
        let p = parts[start];
        let id = id_for(p);
        let gathered = self.gather(sku, spread, p, qty).await?;
        if gathered == 0 && !req.allow_partial {
            return Err(self.short_of(sku, qty, spread).await?);
        }
        match self.reserve_in(&id, req, line()).await {
            Err(EngineError::Rejected(Rejection::Insufficient(_))) => {
                Err(self.short_of(sku, qty, spread).await?)
            }
            other => other.map(|r| (id, r)),
        }
    }

    /// The refusal of `qty` of a spread SKU: its available units over all
    /// buckets.
    async fn short_of(
        &self,
        sku: &Sku,
        qty: i64,
        spread: Spread,
    ) -> Result<EngineError, EngineError> {
        let available = self.available_over_buckets(sku, spread).await?;
        Ok(Rejection::Insufficient(vec![Shortage {
            sku: sku.clone(),
            requested: qty,
            available,
        }])
        .into())
    }

    /// Shortages with the available units of spread SKUs over all buckets.
    pub(super) async fn with_totals(
        &self,
        mut short: Vec<Shortage>,
    ) -> Result<Vec<Shortage>, EngineError> {
        for s in &mut short {
            if let Some(spread) = self.spread_of(&s.sku) {
                s.available = self.available_over_buckets(&s.sku, spread).await?;
            }
        }
        Ok(short)
    }

    /// A spread SKU's available units in each bucket `0..span` (0 where it
    /// has no counters).
    async fn bucket_available(
        &self,
        sku: &Sku,
        spread: Spread,
    ) -> Result<Vec<(Partition, i64)>, EngineError> {
        let parts: Vec<Partition> = self.buckets(sku, spread.span).collect();
        let reads = parts.iter().map(|p| {
            let key = self.keys.part(*p).avail();
            let name = sku.to_string();
            self.run(|mut conn| async move {
                redis::cmd("HGET")
                    .arg(key)
                    .arg(name)
                    .query_async::<Option<i64>>(&mut conn)
                    .await
            })
        });
        let avail = futures_util::future::try_join_all(reads).await?;
        Ok(parts
            .into_iter()
            .zip(avail)
            .map(|(p, a)| (p, a.unwrap_or(0).max(0)))
            .collect())
    }

    /// Available units of a spread SKU over all its buckets.
    pub async fn available_over_buckets(
        &self,
        sku: &Sku,
        spread: Spread,
    ) -> Result<i64, EngineError> {
        Ok(self
            .bucket_available(sku, spread)
            .await?
            .iter()
            .map(|(_, a)| a)
            .sum())
    }

    /// Moves units of a spread SKU from its other buckets into partition
    /// `into` until `need` are available there (or none are left
    /// elsewhere). Returns how many were moved.
    pub(super) async fn gather(
        &self,
        sku: &Sku,
        spread: Spread,
        into: Partition,
        need: i64,
    ) -> Result<i64, EngineError> {
        let mut avail = self.bucket_available(sku, spread).await?;
        let have = avail
            .iter()
            .find(|(p, _)| *p == into)
            .map_or(0, |(_, a)| *a);
        let mut missing = need - have;
        avail.sort_by_key(|(_, a)| -a);
        let mut moved = 0;
        for (from, a) in avail {
            if missing <= 0 {
                break;
            }
            if from == into || a == 0 {
                continue;
            }
            let x = self.transfer(sku, from, into, a.min(missing)).await?;
            moved += x;
            missing -= x;
        }
        Ok(moved)
    }

    /// Moves up to `units` available units of `sku` from partition `from`
    /// to `to`; returns how many arrived. A transfer cut off after its take
    /// is finished by the reaper (`finish_transfers`).
    pub async fn transfer(
        &self,
        sku: &Sku,
        from: Partition,
        to: Partition,
        units: i64,
    ) -> Result<i64, EngineError> {
        let id = format!("t{}", uuid::Uuid::new_v4().simple());
        let src = self.keys.part(from);
        let take = self
            .write_script(
                from,
                &self.scripts.transfer,
                src.avail(),
                vec![
                    src.base().to_owned(),
                    "take".into(),
                    id.clone(),
                    sku.to_string(),
                    units.to_string(),
                    to.0.to_string(),
                ],
            )
            .await?;
        if take.code != "ok" {
            return Err(rejection_or_bug(&take));
        }
        let bad = || anyhow!("transfer reply {:?}", take.fields);
        let taken: i64 = take.fields[0].parse().map_err(|_| bad())?;
        if taken == 0 {
            return Ok(0);
        }
        // The take must be in the ledger before the units arrive anywhere:
        // a source that lost the take with its last writes (a failover) is
        // rebuilt from the ledger, and would otherwise have the units back
        // while the destination has them too.
        if let Some(durable) = self.durable.get() {
            let f = &take.fields;
            let entry = OutboxEntry {
                partition: from,
                id: f[1].parse::<StreamId>().map_err(|_| bad())?,
                event: OutboxEvent::Transfer {
                    sku: sku.clone(),
                    transfer_id: id.clone(),
                    delta: -taken,
                    on_hand_after: f[2].parse().map_err(|_| bad())?,
                    at: super::replies::time(&f[3])?,
                },
            };
            if !durable(entry).await {
                // Postgres cannot take it now: the units go back where they
                // were rather than wait for the ledger on their way.
                let undone = self.transfer_undo(from, &id).await;
                tracing::warn!(%sku, from = %from, to = %to, undone = ?undone.as_ref().map(|r| r.code.clone()),
                    "a transfer's take could not be recorded; given back");
                return Ok(0);
            }
            // A take lost with the source's last writes (a failover while
            // it was being recorded) is not given: the rebuilt source has
            // the units.
            let still = self.transfer_op(from, "pending", &id).await?;
            if still.fields.first().map(String::as_str) != Some("1") {
                tracing::warn!(%sku, from = %from, "a transfer's take was lost in its source; not given");
                return Ok(0);
            }
        }
        if let Err(e) = self.give(to, &id, sku, taken).await {
            tracing::warn!(%sku, from = %from, to = %to, error = ?e,
                "a transfer's units could not be given yet; the reaper finishes it");
            return Ok(0);
        }
        let _ = self.transfer_done(from, &id).await;
        Ok(taken)
    }

    async fn give(
        &self,
        to: Partition,
        id: &str,
        sku: &Sku,
        units: i64,
    ) -> Result<(), EngineError> {
        let dst = self.keys.part(to);
        let reply = self
            .write_script(
                to,
                &self.scripts.transfer,
                dst.avail(),
                vec![
                    dst.base().to_owned(),
                    "give".into(),
                    id.to_owned(),
                    sku.to_string(),
                    units.to_string(),
                ],
            )
            .await?;
        match reply.code.as_str() {
            "ok" | "repeat" => Ok(()),
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    async fn transfer_done(&self, from: Partition, id: &str) -> Result<(), EngineError> {
        self.transfer_op(from, "done", id).await.map(drop)
    }

    /// Gives a take back in its source, unless it is old enough for the
    /// reaper to finish it (the two never both act on one transfer).
    async fn transfer_undo(&self, p: Partition, id: &str) -> Result<super::Reply, EngineError> {
        let keys = self.keys.part(p);
        self.write_script(
            p,
            &self.scripts.transfer,
            keys.avail(),
            vec![
                keys.base().to_owned(),
                "undo".into(),
                id.to_owned(),
                TRANSFER_STALLED.as_millis().to_string(),
            ],
        )
        .await
    }

    /// One of transfer.lua's steps that name only the transfer, in `p`.
    async fn transfer_op(
        &self,
        p: Partition,
        op: &str,
        id: &str,
    ) -> Result<super::Reply, EngineError> {
        let keys = self.keys.part(p);
        self.write_script(
            p,
            &self.scripts.transfer,
            keys.avail(),
            vec![keys.base().to_owned(), op.to_owned(), id.to_owned()],
        )
        .await
    }

    /// Transfers taken in partition `p` more than a few seconds ago and not
    /// done (their instance stopped between take and done), at most 100.
    pub async fn stalled_transfers(
        &self,
        p: Partition,
    ) -> Result<Vec<StalledTransfer>, EngineError> {
        let keys = self.keys.part(p);
        let reply = self
            .write_script(
                p,
                &self.scripts.transfer,
                keys.avail(),
                vec![
                    keys.base().to_owned(),
                    "due".into(),
                    TRANSFER_STALLED.as_millis().to_string(),
                ],
            )
            .await?;
        let mut out = Vec::new();
        for pair in reply.fields.chunks_exact(2) {
            let parts: Vec<&str> = pair[1].split_ascii_whitespace().collect();
            let [sku, units, to] = parts.as_slice() else {
                return Err(anyhow!("bad pending transfer {pair:?}").into());
            };
            out.push(StalledTransfer {
                id: pair[0].clone(),
                sku: Sku::parse(sku).map_err(|m| anyhow!(m))?,
                units: units
                    .parse()
                    .map_err(|_| anyhow!("bad pending transfer {pair:?}"))?,
                to: Partition(
                    to.parse()
                        .map_err(|_| anyhow!("bad pending transfer {pair:?}"))?,
                ),
            });
        }
        Ok(out)
    }

    /// Finishes a stalled transfer taken in `p` whose take the ledger has:
    /// gives its units (unless `given`: the ledger has the give already, so
    /// the destination made it and then lost it with its data, and the
    /// rebuild counted it), then drops the pending record.
    pub async fn finish_transfer(
        &self,
        p: Partition,
        t: &StalledTransfer,
        given: bool,
    ) -> Result<(), EngineError> {
        if !given {
            self.give(t.to, &t.id, &t.sku, t.units).await?;
        }
        self.transfer_done(p, &t.id).await
    }

    /// Sets up buckets `1..span` of a spread SKU (counters, and bucket 0's
    /// rules), so holds may go there.
    pub async fn set_up_buckets(&self, sku: &Sku, spread: Spread) -> Result<(), EngineError> {
        let own = self.keys.of_sku(sku);
        let rules_key = self.keys.part(own).rules();
        let name = sku.to_string();
        let rules: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("HGET")
                    .arg(rules_key)
                    .arg(name)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let rules = rules.unwrap_or_default();
        for p in self.buckets(sku, spread.span).skip(1) {
            if p == own {
                continue;
            }
            let keys = self.keys.part(p);
            let reply = self
                .write_script(
                    p,
                    &self.scripts.bucket,
                    keys.avail(),
                    vec![keys.base().to_owned(), sku.to_string(), rules.clone()],
                )
                .await?;
            if reply.code != "ok" {
                return Err(rejection_or_bug(&reply));
            }
        }
        Ok(())
    }

    /// Evens out a spread SKU's available units over its buckets, and
    /// empties buckets it no longer uses into bucket 0. Returns the units
    /// moved.
    pub async fn balance(&self, sku: &Sku, spread: Spread) -> Result<i64, EngineError> {
        self.set_up_buckets(sku, spread).await?;
        let avail = self.bucket_available(sku, spread).await?;
        let n = usize::from(spread.buckets.max(1));
        let mut moved = 0;
        for (p, a) in avail.iter().skip(n) {
            if *a > 0 {
                moved += self.transfer(sku, *p, avail[0].0, *a).await?;
            }
        }
        let mut active: Vec<(Partition, i64)> = avail.into_iter().take(n).collect();
        // The fullest gives the emptiest half the difference until no two
        // differ by more than one unit.
        loop {
            active.sort_by_key(|(_, a)| *a);
            let (low, high) = (active[0], active[active.len() - 1]);
            let x = (high.1 - low.1) / 2;
            if x <= 0 {
                break;
            }
            let got = self.transfer(sku, high.0, low.0, x).await?;
            if got == 0 {
                break;
            }
            moved += got;
            active[0].1 += got;
            let last = active.len() - 1;
            active[last].1 -= got;
        }
        Ok(moved)
    }

    /// Adds the other buckets of a spread SKU to its view of bucket 0.
    pub(super) async fn add_buckets(
        &self,
        sku: &Sku,
        span: u16,
        on_hand: &mut i64,
        held: &mut i64,
    ) -> Result<(), EngineError> {
        for p in self.buckets(sku, span).skip(1) {
            if p == self.keys.of_sku(sku) {
                continue;
            }
            let keys = self.keys.part(p);
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.cmd("HGET").arg(keys.avail()).arg(sku.as_str());
            pipe.cmd("HGET").arg(keys.on_hand()).arg(sku.as_str());
            let (avail, oh): (Option<i64>, Option<i64>) = self
                .run(|mut conn| async move { pipe.query_async(&mut conn).await })
                .await?;
            let (avail, oh) = (avail.unwrap_or(0), oh.unwrap_or(0));
            *on_hand += oh;
            *held += oh - avail;
        }
        Ok(())
    }
}
