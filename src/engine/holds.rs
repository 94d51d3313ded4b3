//! Holds: reserve, read, change, commit, release and expire.
//!
//! A basket whose SKUs all live in one partition (every basket, with one
//! partition) is one script, as the home partition its id names. A basket
//! over several partitions has its home record in the partition of its id
//! (the highest of its partitions) and a part in each other one, changed in
//! a fixed partition order:
//!
//! - reserve and PATCH stage their change in each other partition first
//!   (`stage.lua`: units taken, the change pending); the home then takes
//!   its own lines and the new version in one script (the commit point),
//!   and the stages are confirmed (`finish_stage.lua`). A refusal anywhere
//!   undoes the stages, and every partition is then checked read-only, so
//!   the 409 lists every short line. The home takes a change only within
//!   `WINDOW` of its first stage; a stage nobody finished is settled by the
//!   reaper after `PROVISIONAL` (it asks the home), so a crash between
//!   steps strands no units.
//! - commit marks the home `committing` first (it can no longer expire or
//!   change), sells every part (`commit_part.lua`, each with its outbox
//!   entry), then sells the home's lines with the order's entry; the reaper
//!   finishes a commit a crash cut off.
//! - release ends the home, then each part. A part never ends by itself:
//!   when it is due the reaper asks its home (`resolve_part`).

use super::replies::{self, Record};
use super::{
    hold_from, push_lines, push_lines_with_record, rejection_or_bug, Committed, Engine,
    EngineError, Reserved,
};
use crate::domain::{
    Hold, HoldStatus, Order, OrderId, OrderLine, OutboxEntry, OutboxEvent, Partition, PatchRequest,
    Rejection, ReservationId, ReserveRequest, Shortage, Sku,
};
use crate::metrics as m;
use anyhow::{anyhow, Context};
use std::collections::BTreeMap;
use std::time::Duration;

/// A stage nobody finished is settled by the reaper this long after it.
const PROVISIONAL: Duration = Duration::from_secs(15);
/// The home takes a change only this long after its first stage (well
/// before the reaper may settle the stage; Redis nodes' clocks may differ
/// by a little of the rest).
const WINDOW: Duration = Duration::from_secs(5);
/// Order id index entries outlive the hold so a reused order id is refused.
const ORDER_INDEX: Duration = Duration::from_secs(8 * 24 * 3600);
/// A commit over several partitions left `committing` this long is finished
/// by the reaper.
const COMMIT_STALLED: Duration = Duration::from_secs(5);

/// The change a refusal is about: a reserve, or a PATCH of the hold of
/// this customer.
#[derive(Clone, Copy)]
enum Change<'a> {
    Reserve(&'a ReserveRequest),
    Patch(&'a PatchRequest, &'a str),
}

/// How a partition answered a stage.
enum Staged {
    /// Staged at `ms` (Redis time), with the lines held short.
    Yes { ms: i64, shortages: Vec<Shortage> },
    /// Nothing could be held here (allow_partial).
    Nothing(Vec<Shortage>),
}

impl Engine {
    /// The home partition of a new hold of `lines`: the highest of their
    /// partitions (the last step of a change over several is the home's).
    pub fn home_for(&self, lines: &[(Sku, i64)]) -> Partition {
        lines
            .iter()
            .map(|(sku, _)| self.keys.of_sku(sku))
            .max()
            .unwrap_or(Partition(0))
    }

    /// A hold's record in partition `p`, with Redis's time.
    async fn record(
        &self,
        p: Partition,
        id: &ReservationId,
    ) -> Result<Option<(Record, i64)>, EngineError> {
        let reply = self
            .script(
                p,
                &self.scripts.get_hold,
                self.keys.part(p).hold(id),
                vec![self.keys.part(p).base().to_owned()],
            )
            .await?;
        if reply.code != "ok" {
            return match rejection_or_bug(&reply) {
                EngineError::Rejected(Rejection::NotFound) => Ok(None),
                e => Err(e),
            };
        }
        let now: i64 = reply.fields[1].parse().context("get_hold reply")?;
        Ok(Some((Record::parse(&reply.fields[0])?, now)))
    }

    /// Reads a hold as the API shows it: its home record and, for a basket
    /// over several partitions, its parts' lines as confirmed.
    pub async fn hold(&self, id: &ReservationId) -> Result<Option<Hold>, EngineError> {
        let home = self.keys.home(id);
        let Some((record, now)) = self.record(home, id).await? else {
            return Ok(None);
        };
        self.hold_with_parts(id, &record, Some(now)).await.map(Some)
    }

    /// The hold of home record `record`, with its parts' lines as
    /// confirmed; a held hold past its expiry at `now` reads as expired
    /// (with `None`, as the record says: a script's answer of that moment).
    async fn hold_with_parts(
        &self,
        id: &ReservationId,
        record: &Record,
        now: Option<i64>,
    ) -> Result<Hold, EngineError> {
        let mut part_lines = Vec::new();
        for p in &record.parts {
            if let Some((part, _)) = self.record(Partition(*p), id).await? {
                let taken = part.staged_version().is_some_and(|v| v <= record.version);
                part_lines.extend(part.confirmed_lines(taken));
            }
        }
        Ok(replies::hold_of(id, record, part_lines, now)?)
    }

    /// Whether a hold unknown to Redis may have been lost with its home
    /// partition's last writes (a rebuild after a restart, failover or data
    /// loss in the last 25 h), rather than never made.
    pub async fn maybe_lost(&self, id: &ReservationId) -> Result<bool, EngineError> {
        let key = format!("{}lost-at", self.keys.part(self.keys.home(id)).base());
        let lost_at: Option<i64> = self
            .run(|mut conn| async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        let day = 25 * 3600 * 1000;
        Ok(lost_at.is_some_and(|t| chrono::Utc::now().timestamp_millis() - t < day))
    }

    /// Holds every line of `req` under `id`, or nothing.
    #[tracing::instrument(skip_all, fields(reservation = %id, lines = req.lines.len()))]
    pub async fn reserve(
        &self,
        id: &ReservationId,
        req: &ReserveRequest,
    ) -> Result<Reserved, EngineError> {
        let groups = self.place(&req.lines, req.customer_id.as_deref());
        self.reserve_in(id, req, groups).await
    }

    /// Holds every line of `req` under `id`, or nothing, each group of
    /// lines in its partition.
    pub(super) async fn reserve_in(
        &self,
        id: &ReservationId,
        req: &ReserveRequest,
        groups: BTreeMap<Partition, Vec<(Sku, i64)>>,
    ) -> Result<Reserved, EngineError> {
        let home = self.keys.home(id);
        let reserved = if groups.len() == 1 && groups.contains_key(&home) {
            let reply = self
                .reserve_script(home, id, req, "", None, &req.lines)
                .await?;
            self.reserved(id, &reply)?
        } else {
            self.reserve_over_partitions(id, req, home, groups).await?
        };
        if !reserved.replayed {
            metrics::counter!(m::RESERVATIONS_CREATED).increment(1);
        }
        Ok(reserved)
    }

    /// Runs reserve.lua in `p` in `mode` ('', 'home', 'check'); `home` gives
    /// a home's first stage time, other partitions and basket order.
    async fn reserve_script(
        &self,
        p: Partition,
        id: &ReservationId,
        req: &ReserveRequest,
        mode: &str,
        home: Option<(i64, String, String)>,
        lines: &[(Sku, i64)],
    ) -> Result<super::Reply, EngineError> {
        let keys = self.keys.part(p);
        let (t0, parts, basket) = home.unwrap_or_default();
        let mut args = vec![
            keys.base().to_owned(),
            id.to_string(),
            (req.ttl_seconds * 1000).to_string(),
            req.customer_id.clone().unwrap_or_default(),
            req.channel.clone().unwrap_or_default(),
            if req.allow_partial { "1" } else { "0" }.to_owned(),
            mode.to_owned(),
            t0.to_string(),
            WINDOW.as_millis().to_string(),
            parts,
            basket,
        ];
        push_lines_with_record(&mut args, lines);
        let script = &self.scripts.reserve;
        if mode == "check" {
            self.script(p, script, keys.hold(id), args).await
        } else {
            self.write_script(p, script, keys.hold(id), args).await
        }
    }

    /// What a reserve script's reply says (single partition or home).
    fn reserved(&self, id: &ReservationId, reply: &super::Reply) -> Result<Reserved, EngineError> {
        if reply.code == "exists" {
            return Err(EngineError::Internal(anyhow!("exists")));
        }
        let hold = hold_from(id, reply)?;
        let words: Vec<String> = reply.fields[1]
            .split_ascii_whitespace()
            .map(str::to_owned)
            .collect();
        Ok(Reserved {
            hold,
            shortages: replies::shortages(&words)?,
            replayed: false,
        })
    }

    async fn reserve_over_partitions(
        &self,
        id: &ReservationId,
        req: &ReserveRequest,
        home: Partition,
        groups: BTreeMap<Partition, Vec<(Sku, i64)>>,
    ) -> Result<Reserved, EngineError> {
        // A retry of a reserve already made finds its hold.
        if let Some(hold) = self.hold(id).await? {
            return Ok(Reserved {
                hold,
                shortages: Vec::new(),
                replayed: true,
            });
        }
        let change = new_change(1);
        let mut staged = Vec::new();
        let mut shortages = Vec::new();
        let mut t0 = i64::MAX;
        for (p, lines) in groups.iter().filter(|(p, _)| **p != home) {
            let outcome = self
                .stage(
                    *p,
                    id,
                    home,
                    &change,
                    req.customer_id.as_deref(),
                    req.channel.as_deref(),
                    req.allow_partial,
                    lines,
                )
                .await;
            match outcome {
                Ok(Staged::Yes { ms, shortages: s }) => {
                    staged.push(*p);
                    t0 = t0.min(ms);
                    shortages.extend(s);
                }
                Ok(Staged::Nothing(s)) => shortages.extend(s),
                Err(e) => {
                    self.undo_stages(id, &staged, &change).await;
                    return Err(self
                        .complete_refusal(id, Change::Reserve(req), &groups, e)
                        .await);
                }
            }
        }
        if staged.is_empty() {
            t0 = chrono::Utc::now().timestamp_millis();
        }
        let basket = req
            .lines
            .iter()
            .map(|(s, _)| s.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        let parts = staged
            .iter()
            .map(|p| p.0.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let home_lines = groups.get(&home).cloned().unwrap_or_default();
        let reply = self
            .reserve_script(
                home,
                id,
                req,
                "home",
                Some((t0, parts, basket)),
                &home_lines,
            )
            .await;
        let reply = match reply {
            Ok(r) if r.code == "ok" => r,
            Ok(r) if r.code == "exists" => {
                // The same reserve made meanwhile (a retry racing its first).
                self.undo_stages(id, &staged, &change).await;
                let hold = self.hold(id).await?.ok_or(Rejection::NotFound)?;
                return Ok(Reserved {
                    hold,
                    shortages: Vec::new(),
                    replayed: true,
                });
            }
            Ok(r) if r.code == "too_late" => {
                self.undo_stages(id, &staged, &change).await;
                return Err(EngineError::Unavailable(anyhow!(
                    "holding the basket's partitions took too long; nothing is held"
                )));
            }
            Ok(r) => {
                self.undo_stages(id, &staged, &change).await;
                let e = rejection_or_bug(&r);
                if let (true, EngineError::Rejected(Rejection::Insufficient(home_short))) =
                    (req.allow_partial, &e)
                {
                    // Nothing could be held anywhere: every line was short
                    // at its own step (a check now could see other stock).
                    shortages.extend(home_short.iter().cloned());
                    return Err(Rejection::Insufficient(shortages).into());
                }
                return Err(self
                    .complete_refusal(id, Change::Reserve(req), &groups, e)
                    .await);
            }
            Err(e) => {
                if !matches!(e, EngineError::OutcomeUnknown(_)) {
                    self.undo_stages(id, &staged, &change).await;
                }
                return Err(e);
            }
        };
        let home_record = Record::parse(&reply.fields[0])?;
        shortages.extend(replies::shortages(
            &reply.fields[1]
                .split_ascii_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )?);
        self.confirm_stages(id, &staged, &change, home_record.expires_ms)
            .await;
        let hold = self.hold_with_parts(id, &home_record, None).await?;
        Ok(Reserved {
            hold,
            shortages,
            replayed: false,
        })
    }

    /// Stages `lines` (new quantities) of hold `id` in partition `p`.
    #[allow(clippy::too_many_arguments)]
    async fn stage(
        &self,
        p: Partition,
        id: &ReservationId,
        home: Partition,
        change: &str,
        customer_id: Option<&str>,
        channel: Option<&str>,
        allow_partial: bool,
        lines: &[(Sku, i64)],
    ) -> Result<Staged, EngineError> {
        let keys = self.keys.part(p);
        let mut args = vec![
            keys.base().to_owned(),
            id.to_string(),
            home.0.to_string(),
            change.to_owned(),
            PROVISIONAL.as_millis().to_string(),
            customer_id.unwrap_or_default().to_owned(),
            channel.unwrap_or_default().to_owned(),
            if allow_partial { "1" } else { "0" }.to_owned(),
        ];
        push_lines(&mut args, lines);
        let reply = self
            .write_script(p, &self.scripts.stage, keys.hold(id), args)
            .await?;
        let shortages = |s: &str| -> Result<Vec<Shortage>, EngineError> {
            let words: Vec<String> = s.split_ascii_whitespace().map(str::to_owned).collect();
            Ok(replies::shortages(&words)?)
        };
        match reply.code.as_str() {
            "ok" => Ok(Staged::Yes {
                ms: reply.fields[1].parse().context("stage reply")?,
                shortages: shortages(&reply.fields[2])?,
            }),
            "nothing" => Ok(Staged::Nothing(shortages(&reply.fields[0])?)),
            "busy" => Err(EngineError::Unavailable(anyhow!(
                "another change of this reservation is under way; retry"
            ))),
            "committing" => Err(Rejection::Committed.into()),
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    /// Confirms or undoes a staged change in `p` ('' change: only takes the
    /// home's expiry). Errors are logged: the reaper settles what is left.
    async fn finish_stage(
        &self,
        p: Partition,
        id: &ReservationId,
        change: &str,
        op: &str,
        expires_ms: Option<i64>,
    ) -> Result<(), EngineError> {
        let keys = self.keys.part(p);
        let args = vec![
            keys.base().to_owned(),
            id.to_string(),
            change.to_owned(),
            op.to_owned(),
            expires_ms.map(|ms| ms.to_string()).unwrap_or_default(),
        ];
        self.write_script(p, &self.scripts.finish_stage, keys.hold(id), args)
            .await
            .map(drop)
    }

    async fn undo_stages(&self, id: &ReservationId, staged: &[Partition], change: &str) {
        for p in staged {
            if let Err(e) = self.finish_stage(*p, id, change, "undo", None).await {
                tracing::warn!(error = ?e, partition = %p, reservation = %id,
                    "could not undo a stage; the reaper will");
            }
        }
    }

    async fn confirm_stages(
        &self,
        id: &ReservationId,
        staged: &[Partition],
        change: &str,
        expires_ms: i64,
    ) {
        for p in staged {
            if let Err(e) = self
                .finish_stage(*p, id, change, "confirm", Some(expires_ms))
                .await
            {
                tracing::warn!(error = ?e, partition = %p, reservation = %id,
                    "could not confirm a stage; the reaper will");
            }
        }
    }

    /// After a refusal somewhere in a change over several partitions (all
    /// stages undone), checks every partition of it read-only, so the
    /// answer lists every problem, with the precedence a single script has.
    /// A PATCH is checked as the hold's customer.
    async fn complete_refusal(
        &self,
        id: &ReservationId,
        change: Change<'_>,
        groups: &BTreeMap<Partition, Vec<(Sku, i64)>>,
        refused: EngineError,
    ) -> EngineError {
        let EngineError::Rejected(original) = refused else {
            return refused;
        };
        // The checks in the order a single script makes them.
        let rank = match &original {
            Rejection::UnknownSku(_) => 0,
            Rejection::CustomerRequired(_) => 1,
            Rejection::SaleNotStarted(_) => 2,
            Rejection::LimitExceeded(_) => 3,
            Rejection::Insufficient(_) => 4,
            _ => return original.into(),
        };
        let mut lists: [Vec<String>; 5] = Default::default();
        for (p, lines) in groups {
            let reply = match change {
                Change::Reserve(req) => {
                    self.reserve_script(*p, id, req, "check", None, lines).await
                }
                Change::Patch(patch, customer) => {
                    self.patch_script(*p, id, patch, "check", customer, None, lines)
                        .await
                }
            };
            let Ok(reply) = reply else {
                return original.into();
            };
            if reply.code != "checked" {
                continue;
            }
            for (list, found) in lists.iter_mut().zip(&reply.fields) {
                list.extend(found.split_ascii_whitespace().map(str::to_owned));
            }
        }
        let codes = [
            "unknown_sku",
            "customer_required",
            "sale_not_started",
            "limit_exceeded",
            "insufficient",
        ];
        // The first problem in that order: one the checks found first, or
        // the refusal itself (a count may have moved since it was made, so
        // a later check need not see it again). Problems after it are not
        // the answer, as in a single script.
        for (code, list) in codes.iter().zip(lists).take(rank + 1) {
            if list.is_empty() {
                continue;
            }
            let reply = super::Reply {
                code: (*code).to_owned(),
                fields: list,
            };
            return rejection_or_bug(&reply);
        }
        original.into()
    }

    /// Sets line quantities and/or restarts the TTL of a held hold.
    #[tracing::instrument(skip_all, fields(reservation = %id, lines = req.lines.len()))]
    pub async fn patch(&self, id: &ReservationId, req: &PatchRequest) -> Result<Hold, EngineError> {
        let home = self.keys.home(id);
        let mut groups = self.by_partition(&req.lines);
        let spread = req.lines.iter().any(|(s, _)| self.spread_of(s).is_some());
        if spread || groups.keys().any(|p| *p != home) {
            // A line of a spread SKU lives in one of its buckets: where the
            // hold has it, else where a new one goes.
            let (record, _) = self.record(home, id).await?.ok_or(Rejection::NotFound)?;
            groups = self.locate(id, home, &record, &req.lines).await?;
        }
        let first = self.patch_in(id, req, home, groups.clone()).await;
        let Err(EngineError::Rejected(Rejection::Insufficient(short))) = &first else {
            return first;
        };
        let mut gathered = 0;
        for s in short {
            if let Some(spread) = self.spread_of(&s.sku) {
                if let Some((p, _)) = groups
                    .iter()
                    .find(|(_, lines)| lines.iter().any(|(sku, _)| *sku == s.sku))
                {
                    gathered += self.gather(&s.sku, spread, *p, s.requested).await?;
                }
            }
        }
        let again = if gathered > 0 {
            self.patch_in(id, req, home, groups).await
        } else {
            first
        };
        match again {
            Err(EngineError::Rejected(Rejection::Insufficient(short))) => {
                Err(Rejection::Insufficient(self.with_totals(short).await?).into())
            }
            other => other,
        }
    }

    /// Where each of `lines` of hold `id` lives: with the hold's line of
    /// that SKU (home or a part), else where a new line goes.
    async fn locate(
        &self,
        id: &ReservationId,
        home: Partition,
        record: &Record,
        lines: &[(Sku, i64)],
    ) -> Result<BTreeMap<Partition, Vec<(Sku, i64)>>, EngineError> {
        let mut parts: Option<Vec<(Partition, Vec<Sku>)>> = None;
        let mut groups: BTreeMap<Partition, Vec<(Sku, i64)>> = BTreeMap::new();
        for (sku, qty) in lines {
            let at = if record.lines.iter().any(|(s, _)| s == sku) {
                home
            } else if record.basket.iter().any(|s| s == sku.as_str()) {
                if parts.is_none() {
                    let mut found = Vec::new();
                    for p in record.parts.iter().map(|p| Partition(*p)) {
                        if let Some((part, _)) = self.record(p, id).await? {
                            found.push((p, part.lines.into_iter().map(|(s, _)| s).collect()));
                        }
                    }
                    parts = Some(found);
                }
                parts
                    .iter()
                    .flatten()
                    .find(|(_, skus)| skus.contains(sku))
                    .map_or_else(|| self.keys.of_sku(sku), |(p, _)| *p)
            } else {
                self.place_line(sku, record.customer_id.as_deref())
            };
            groups.entry(at).or_default().push((sku.clone(), *qty));
        }
        Ok(groups)
    }

    async fn patch_in(
        &self,
        id: &ReservationId,
        req: &PatchRequest,
        home: Partition,
        groups: BTreeMap<Partition, Vec<(Sku, i64)>>,
    ) -> Result<Hold, EngineError> {
        if groups.keys().all(|p| *p == home) {
            let reply = self
                .patch_script(home, id, req, "", "", None, &req.lines)
                .await?;
            let hold = hold_from(id, &reply)?;
            let record = Record::parse(&reply.fields[0])?;
            if record.parts.is_empty() {
                return Ok(hold);
            }
            if req.ttl_seconds.is_some() {
                for p in &record.parts {
                    let _ = self
                        .finish_stage(Partition(*p), id, "", "confirm", Some(record.expires_ms))
                        .await;
                }
            }
            return self.hold_with_parts(id, &record, None).await;
        }
        self.patch_over_partitions(id, req, home, groups).await
    }

    /// Runs patch.lua in `p` in `mode` ('', 'home', 'check'); `home` gives
    /// the home's (prior version, first stage time, other partitions,
    /// basket order); `customer` the hold's customer for 'check'.
    #[allow(clippy::too_many_arguments)]
    async fn patch_script(
        &self,
        p: Partition,
        id: &ReservationId,
        req: &PatchRequest,
        mode: &str,
        customer: &str,
        home: Option<(u64, i64, String, String)>,
        lines: &[(Sku, i64)],
    ) -> Result<super::Reply, EngineError> {
        let keys = self.keys.part(p);
        let (prior, t0, parts, basket) = home.unwrap_or_default();
        let mut args = vec![
            keys.base().to_owned(),
            id.to_string(),
            req.ttl_seconds
                .map(|s| (s * 1000).to_string())
                .unwrap_or_default(),
            mode.to_owned(),
            if mode == "check" {
                customer.to_owned()
            } else {
                prior.to_string()
            },
            (prior + 1).to_string(),
            t0.to_string(),
            WINDOW.as_millis().to_string(),
            parts,
            basket,
        ];
        push_lines(&mut args, lines);
        let script = &self.scripts.patch;
        if mode == "check" {
            self.script(p, script, keys.hold(id), args).await
        } else {
            self.write_script(p, script, keys.hold(id), args).await
        }
    }

    async fn patch_over_partitions(
        &self,
        id: &ReservationId,
        req: &PatchRequest,
        home: Partition,
        groups: BTreeMap<Partition, Vec<(Sku, i64)>>,
    ) -> Result<Hold, EngineError> {
        let (record, now) = self.record(home, id).await?.ok_or(Rejection::NotFound)?;
        match record.status.as_str() {
            "held" if record.expires_ms <= now => return Err(Rejection::Expired.into()),
            "held" => {}
            "committing" | "committed" => return Err(Rejection::Committed.into()),
            "released" => return Err(Rejection::Released.into()),
            _ => return Err(Rejection::Expired.into()),
        }
        let version = record.version + 1;
        let change = new_change(version);
        let customer = record.customer_id.clone().unwrap_or_default();
        let mut staged = Vec::new();
        let mut t0 = i64::MAX;
        for (p, lines) in groups.iter().filter(|(p, _)| **p != home) {
            let outcome = self
                .stage(
                    *p,
                    id,
                    home,
                    &change,
                    record.customer_id.as_deref(),
                    record.channel.as_deref(),
                    false,
                    lines,
                )
                .await;
            match outcome {
                Ok(Staged::Yes { ms, .. }) => {
                    staged.push(*p);
                    t0 = t0.min(ms);
                }
                Ok(Staged::Nothing(_)) => {}
                Err(e) => {
                    self.undo_stages(id, &staged, &change).await;
                    let e = self
                        .complete_refusal(id, Change::Patch(req, &customer), &groups, e)
                        .await;
                    return Err(e);
                }
            }
        }
        let mut parts: Vec<u16> = record.parts.clone();
        for p in &staged {
            if !parts.contains(&p.0) {
                parts.push(p.0);
            }
        }
        parts.sort_unstable();
        let mut basket: Vec<String> = if record.basket.is_empty() {
            record.lines.iter().map(|(s, _)| s.to_string()).collect()
        } else {
            record.basket.clone()
        };
        for (sku, _) in &req.lines {
            if !basket.iter().any(|b| b == sku.as_str()) {
                basket.push(sku.to_string());
            }
        }
        let home_lines = groups.get(&home).cloned().unwrap_or_default();
        let context = (
            record.version,
            t0,
            parts
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" "),
            basket.join(" "),
        );
        let reply = self
            .patch_script(home, id, req, "home", "", Some(context), &home_lines)
            .await;
        let reply = match reply {
            Ok(r) if r.code == "ok" => r,
            Ok(r) => {
                self.undo_stages(id, &staged, &change).await;
                return Err(match r.code.as_str() {
                    "conflict" | "too_late" => EngineError::Unavailable(anyhow!(
                        "another change of this reservation came first; retry"
                    )),
                    "committing" => Rejection::Committed.into(),
                    _ => {
                        let e = rejection_or_bug(&r);
                        self.complete_refusal(id, Change::Patch(req, &customer), &groups, e)
                            .await
                    }
                });
            }
            Err(e) => {
                if !matches!(e, EngineError::OutcomeUnknown(_)) {
                    self.undo_stages(id, &staged, &change).await;
                }
                return Err(e);
            }
        };
        let home_record = Record::parse(&reply.fields[0])?;
        self.confirm_stages(id, &staged, &change, home_record.expires_ms)
            .await;
        if req.ttl_seconds.is_some() {
            for p in record.parts.iter().map(|p| Partition(*p)) {
                if !staged.contains(&p) {
                    let _ = self
                        .finish_stage(p, id, "", "confirm", Some(home_record.expires_ms))
                        .await;
                }
            }
        }
        self.hold_with_parts(id, &home_record, None).await
    }

    /// Turns a held hold into a sale and its outbox entries.
    #[tracing::instrument(skip_all, fields(reservation = %id, order = %order_id))]
    pub async fn commit(
        &self,
        id: &ReservationId,
        order_id: &OrderId,
        payment_ref: Option<&str>,
    ) -> Result<Committed, EngineError> {
        let home = self.keys.home(id);
        let indexed = self.keys.order_partition(order_id) == home;
        if !indexed {
            self.claim_order_id(order_id, id).await?;
        }
        let reply = self
            .commit_script(home, id, order_id, payment_ref, "", indexed, "")
            .await;
        let reply = match reply {
            Ok(r) if r.code == "multi" => {
                return self
                    .commit_over_partitions(id, home, order_id, payment_ref, indexed, &r)
                    .await;
            }
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        if reply.code != "ok" && !indexed {
            self.unclaim_order_id(order_id, id).await;
        }
        let mut hold = hold_from(id, &reply)?;
        if reply.fields[1] != "1" {
            // Committed before: a basket over several partitions has lines
            // in its parts too.
            let record = Record::parse(&reply.fields[0])?;
            if !record.parts.is_empty() {
                hold = self.hold_with_parts(id, &record, None).await?;
            }
        }
        let order = replies::order_of(&hold)?;
        if reply.fields[1] != "1" {
            return Ok(Committed {
                order,
                fresh: false,
                outbox: Vec::new(),
            });
        }
        metrics::counter!(m::RESERVATIONS_COMMITTED).increment(1);
        let entry = OutboxEntry {
            partition: home,
            id: reply.fields[2].parse().map_err(|m: String| anyhow!(m))?,
            event: OutboxEvent::Commit {
                order: order.clone(),
                sold: replies::sold_lines(&reply.fields[3])?,
                pools: replies::pool_lines(reply.fields.get(4).map_or("", String::as_str))?,
            },
        };
        Ok(Committed {
            order,
            fresh: true,
            outbox: vec![entry],
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn commit_script(
        &self,
        p: Partition,
        id: &ReservationId,
        order_id: &OrderId,
        payment_ref: Option<&str>,
        mode: &str,
        indexed: bool,
        all: &str,
    ) -> Result<super::Reply, EngineError> {
        let keys = self.keys.part(p);
        let args = vec![
            keys.base().to_owned(),
            id.to_string(),
            order_id.to_string(),
            payment_ref.unwrap_or_default().to_owned(),
            mode.to_owned(),
            if indexed { "1" } else { "0" }.to_owned(),
            all.to_owned(),
        ];
        self.write_script(p, &self.scripts.commit, keys.hold(id), args)
            .await
    }

    /// Claims an order id for a hold in the id's own partition (when that
    /// is not the hold's home, where the commit script checks it itself).
    async fn claim_order_id(
        &self,
        order_id: &OrderId,
        id: &ReservationId,
    ) -> Result<(), EngineError> {
        let claimed = self
            .lease_call(
                self.keys.order(order_id),
                super::LeaseOp::Acquire,
                id.as_str(),
                ORDER_INDEX,
            )
            .await?;
        if claimed {
            Ok(())
        } else {
            Err(Rejection::OrderTaken.into())
        }
    }

    async fn unclaim_order_id(&self, order_id: &OrderId, id: &ReservationId) {
        let key = self.keys.order(order_id);
        let released = self
            .lease_call(key, super::LeaseOp::Release, id.as_str(), Duration::ZERO)
            .await;
        if let Err(e) = released {
            tracing::warn!(error = ?e, order = %order_id, "could not free an unused order id");
        }
    }

    async fn commit_over_partitions(
        &self,
        id: &ReservationId,
        home: Partition,
        order_id: &OrderId,
        payment_ref: Option<&str>,
        indexed: bool,
        multi: &super::Reply,
    ) -> Result<Committed, EngineError> {
        // A part lost with its partition's data cannot be sold, and a
        // basket whose every line was set to 0 is empty: refuse before
        // anything is sold.
        let record = Record::parse(&multi.fields[0])?;
        let mut lines = record.lines.len();
        let mut refusal = None;
        for p in &record.parts {
            match self.record(Partition(*p), id).await? {
                Some((part, _)) => {
                    let taken = part.staged_version().is_some_and(|v| v <= record.version);
                    lines += part
                        .confirmed_lines(taken)
                        .iter()
                        .filter(|(_, q)| *q > 0)
                        .count();
                }
                None => refusal = Some(Rejection::Lost),
            }
        }
        if refusal.is_none() && lines == 0 && record.status == "held" {
            refusal = Some(Rejection::Empty);
        }
        if let Some(refusal) = refusal {
            if !indexed {
                self.unclaim_order_id(order_id, id).await;
            }
            return Err(refusal.into());
        }
        let begun = self
            .commit_script(home, id, order_id, payment_ref, "begin", indexed, "")
            .await?;
        if begun.code != "ok" {
            if !indexed {
                self.unclaim_order_id(order_id, id).await;
            }
            return Err(rejection_or_bug(&begun));
        }
        let record = Record::parse(&begun.fields[0])?;
        if begun.fields[1] == "0" {
            let hold = self.hold(id).await?.ok_or(Rejection::NotFound)?;
            return Ok(Committed {
                order: replies::order_of(&hold)?,
                fresh: false,
                outbox: Vec::new(),
            });
        }
        // The sale has begun: it is finished by a retry, or by the reaper
        // within seconds. A step that fails now must not say "nothing
        // changed" (503 unavailable): the client is told the outcome is
        // unknown, and its retry with the same key answers the order.
        self.finish_commit(id, home, &record)
            .await
            .map_err(|e| match e {
                EngineError::Unavailable(e) => EngineError::OutcomeUnknown(
                    e.context("the sale has begun and is finished by a retry or by the reaper"),
                ),
                e => e,
            })
    }

    /// Sells every part of a basket whose home is `committing` (`record`),
    /// then the home's own lines with the order's entry.
    async fn finish_commit(
        &self,
        id: &ReservationId,
        home: Partition,
        record: &Record,
    ) -> Result<Committed, EngineError> {
        let order_id = OrderId::parse(record.order_id.as_deref().unwrap_or_default())
            .map_err(|m| anyhow!(m))?;
        let at = record
            .committed_ms
            .context("committing hold without time")?;
        let mut entries = Vec::new();
        let mut lines: Vec<(Sku, i64)> = record.lines.clone();
        for p in record.parts.iter().map(|p| Partition(*p)) {
            let keys = self.keys.part(p);
            let args = vec![
                keys.base().to_owned(),
                id.to_string(),
                record.version.to_string(),
                order_id.to_string(),
                at.to_string(),
            ];
            let reply = self
                .write_script(p, &self.scripts.commit_part, keys.hold(id), args)
                .await?;
            match reply.code.as_str() {
                "ok" => {
                    let sold = replies::sold_lines(&reply.fields[1])?;
                    lines.extend(sold.iter().map(|s| (s.sku.clone(), s.qty)));
                    if !reply.fields[0].is_empty() {
                        entries.push(OutboxEntry {
                            partition: p,
                            id: reply.fields[0].parse().map_err(|m: String| anyhow!(m))?,
                            event: OutboxEvent::Part {
                                order_id: order_id.clone(),
                                reservation_id: id.clone(),
                                sold,
                                pools: replies::pool_lines(
                                    reply.fields.get(3).map_or("", String::as_str),
                                )?,
                                at: replies::time(&at.to_string())?,
                            },
                        });
                    }
                }
                "repeat" => lines.extend(Record::parse(&reply.fields[0])?.lines),
                "gone" => tracing::error!(reservation = %id, partition = %p,
                    "a part of a basket being committed is gone; its lines are not sold"),
                _ => return Err(rejection_or_bug(&reply)),
            }
        }
        let basket = &record.basket;
        lines.sort_by_key(|(s, _)| {
            basket
                .iter()
                .position(|b| b == s.as_str())
                .unwrap_or(usize::MAX)
        });
        let all = lines
            .iter()
            .map(|(s, q)| format!("{s} {q}"))
            .collect::<Vec<_>>()
            .join(" ");
        let reply = self
            .commit_script(
                home,
                id,
                &order_id,
                record.payment_ref.as_deref(),
                "finish",
                false,
                &all,
            )
            .await?;
        if reply.code != "ok" {
            return Err(rejection_or_bug(&reply));
        }
        let home_record = Record::parse(&reply.fields[0])?;
        let mut order = Order {
            order_id: order_id.clone(),
            reservation_id: id.clone(),
            customer_id: home_record.customer_id.clone(),
            channel: home_record.channel.clone(),
            payment_ref: home_record.payment_ref.clone(),
            lines: lines
                .iter()
                .map(|(sku, qty)| OrderLine {
                    sku: sku.clone(),
                    qty: *qty,
                    returned_qty: 0,
                })
                .collect(),
            committed_at: replies::time(&at.to_string())?,
            persisted: false,
        };
        let fresh = reply.fields[1] == "1";
        if fresh {
            metrics::counter!(m::RESERVATIONS_COMMITTED).increment(1);
            entries.push(OutboxEntry {
                partition: home,
                id: reply.fields[2].parse().map_err(|m: String| anyhow!(m))?,
                event: OutboxEvent::Commit {
                    order: order.clone(),
                    sold: replies::sold_lines(&reply.fields[3])?,
                    pools: replies::pool_lines(reply.fields.get(4).map_or("", String::as_str))?,
                },
            });
        } else if let Some(hold) = self.hold(id).await? {
            order = replies::order_of(&hold)?;
        }
        Ok(Committed {
            order,
            fresh: fresh || !entries.is_empty(),
            outbox: entries,
        })
    }

    /// Gives a hold's units back (an expired hold is left expired); a basket
    /// over several partitions ends its home first, then each part.
    #[tracing::instrument(skip_all, fields(reservation = %id))]
    pub async fn release(&self, id: &ReservationId) -> Result<Hold, EngineError> {
        let home = self.keys.home(id);
        let keys = self.keys.part(home);
        let args = vec![keys.base().to_owned(), id.to_string()];
        let reply = self
            .write_script(home, &self.scripts.release, keys.hold(id), args)
            .await?;
        let hold = hold_from(id, &reply)?;
        if hold.status == HoldStatus::Released {
            metrics::counter!(m::RESERVATIONS_RELEASED).increment(1);
        }
        let record = Record::parse(&reply.fields[0])?;
        if record.parts.is_empty() {
            return Ok(hold);
        }
        for p in record.parts.iter().map(|p| Partition(*p)) {
            if let Err(e) = self.end_part(p, id, &record.status).await {
                tracing::warn!(error = ?e, partition = %p, reservation = %id,
                    "could not end a part; the reaper will");
            }
        }
        self.hold(id)
            .await?
            .ok_or_else(|| Rejection::NotFound.into())
    }

    async fn end_part(
        &self,
        p: Partition,
        id: &ReservationId,
        state: &str,
    ) -> Result<(), EngineError> {
        let keys = self.keys.part(p);
        let state = if state == "released" {
            "released"
        } else {
            "expired"
        };
        let args = vec![keys.base().to_owned(), id.to_string(), state.to_owned()];
        self.write_script(p, &self.scripts.end_part, keys.hold(id), args)
            .await
            .map(drop)
    }

    /// Expires up to `batch` due holds of partition `p`, and settles the
    /// due parts of baskets whose home is elsewhere; returns how many holds
    /// it expired.
    pub async fn expire_due(&self, p: Partition, batch: usize) -> Result<usize, EngineError> {
        let keys = self.keys.part(p);
        let args = vec![keys.base().to_owned(), batch.to_string()];
        let reply = self
            .write_script(p, &self.scripts.expire, keys.expiry(), args)
            .await?;
        let expired: usize = reply.code.parse().context("expire reply")?;
        metrics::counter!(m::RESERVATIONS_EXPIRED).increment(expired as u64);
        let mut fields = reply.fields.split(|f| f == "|");
        let due_parts = fields.next().unwrap_or_default();
        for id in due_parts.iter().filter_map(|id| ReservationId::parse(id)) {
            if let Err(e) = self.resolve_part(p, &id).await {
                tracing::warn!(error = ?e, partition = %p, reservation = %id,
                    "could not settle a due part; trying again shortly");
            }
        }
        // Homes that expired here: their parts give their units back now
        // (else each would when it falls due and asks its home).
        for home in fields.next().unwrap_or_default() {
            let mut words = home.split(' ');
            let Some(id) = words.next().and_then(ReservationId::parse) else {
                continue;
            };
            for part in words.filter_map(|w| w.parse().ok()).map(Partition) {
                if let Err(e) = self.end_part(part, &id, "expired").await {
                    tracing::warn!(error = ?e, partition = %part, reservation = %id,
                        "could not end the part of an expired basket; it ends when due");
                }
            }
        }
        Ok(expired)
    }

    /// A part that fell due: asks its home what became of the basket, and
    /// follows it (a change confirmed or undone, the expiry taken, the part
    /// ended or sold).
    async fn resolve_part(&self, p: Partition, id: &ReservationId) -> Result<(), EngineError> {
        let Some((part, _)) = self.record(p, id).await? else {
            return Ok(());
        };
        let home = self.keys.home(id);
        let Some((record, now)) = self.record(home, id).await? else {
            // Never made (a reserve that stopped before its home), or lost
            // with the home's partition.
            return self.end_part(p, id, "expired").await;
        };
        match record.status.as_str() {
            "held" if record.expires_ms > now => {
                let change = part.staged.clone().unwrap_or_default();
                let op = match part.staged_version() {
                    Some(v) if v <= record.version => "confirm",
                    Some(_) => {
                        let age = chrono::Utc::now().timestamp_millis()
                            - part.staged_at().unwrap_or_default();
                        if age < 2 * WINDOW.as_millis() as i64 {
                            return Ok(()); // the change may still be under way
                        }
                        "undo"
                    }
                    None => "confirm",
                };
                self.finish_stage(p, id, &change, op, Some(record.expires_ms))
                    .await
            }
            "committing" => Ok(()), // finish_commits sells it
            "committed" => {
                let keys = self.keys.part(p);
                let args = vec![
                    keys.base().to_owned(),
                    id.to_string(),
                    record.version.to_string(),
                    record.order_id.clone().unwrap_or_default(),
                    record.committed_ms.unwrap_or_default().to_string(),
                ];
                self.write_script(p, &self.scripts.commit_part, keys.hold(id), args)
                    .await
                    .map(drop)
            }
            "released" => self.end_part(p, id, "released").await,
            _ => self.end_part(p, id, "expired").await,
        }
    }

    /// Finishes commits over several partitions whose home in `p` has been
    /// `committing` for a while (the committing call crashed); how many.
    pub async fn finish_commits(&self, p: Partition, batch: usize) -> Result<usize, EngineError> {
        let key = self.keys.part(p).committing();
        let before = chrono::Utc::now().timestamp_millis() - COMMIT_STALLED.as_millis() as i64;
        let ids: Vec<String> = self
            .run(|mut conn| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(key)
                    .arg("-inf")
                    .arg(before)
                    .arg("LIMIT")
                    .arg(0)
                    .arg(batch)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        let mut finished = 0;
        for id in ids.iter().filter_map(|id| ReservationId::parse(id)) {
            match self.record(p, &id).await? {
                Some((record, _)) if record.status == "committing" => {
                    tracing::warn!(reservation = %id, "finishing a commit cut off by a crash");
                    self.finish_commit(&id, p, &record).await?;
                    finished += 1;
                }
                _ => {
                    let key = self.keys.part(p).committing();
                    let member = id.to_string();
                    self.run(|mut conn| async move {
                        redis::cmd("ZREM")
                            .arg(key)
                            .arg(member)
                            .query_async::<i64>(&mut conn)
                            .await
                    })
                    .await?;
                }
            }
        }
        Ok(finished)
    }
}

/// A change's name: its version, a random token, and when it started.
fn new_change(version: u64) -> String {
    format!(
        "{version}:{}:{}",
        uuid::Uuid::new_v4().simple(),
        chrono::Utc::now().timestamp_millis()
    )
}
