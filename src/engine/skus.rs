//! SKU set-up, adjustments, restocks and reads of live counts: each SKU
//! lives in one partition, so each of these is one script (or command) in
//! it; a restock and an availability read over several SKUs take one per
//! partition.

use super::{
    pairs, rejection_or_bug, replies, sku_view, Adjusted, Engine, EngineError, EntryRef, SkuPut,
    Spread,
};
use crate::domain::{
    AdjustmentRequest, OrderId, Partition, PutSkuRequest, Rejection, Setting, Shortage, Sku,
    SkuView,
};
use anyhow::{anyhow, Context};
use std::collections::BTreeMap;
use std::time::Duration;

impl Engine {
    /// Creates or updates a SKU; returns it and the outbox entry written, if any.
    #[tracing::instrument(skip_all, fields(sku = %sku))]
    pub async fn put_sku(&self, sku: &Sku, req: &PutSkuRequest) -> Result<SkuPut, EngineError> {
        let opt = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let setting = |s: Setting<String>| match s {
            Setting::Keep => String::new(),
            Setting::Clear => "-".to_owned(),
            Setting::Set(v) => v,
        };
        let pcl = match req.per_customer_limit {
            Setting::Set(n) => Setting::Set(n.to_string()),
            Setting::Clear => Setting::Clear,
            Setting::Keep => Setting::Keep,
        };
        let ssa = match req.sale_starts_at {
            Setting::Set(t) => Setting::Set(t.timestamp_millis().to_string()),
            Setting::Clear => Setting::Clear,
            Setting::Keep => Setting::Keep,
        };
        if req.buckets.is_some_and(|n| n > self.partitions().count()) {
            return Err(Rejection::BadSetting {
                field: "buckets",
                message: "may not exceed the number of partitions (redis.partitions)",
            }
            .into());
        }
        let p = self.keys.of_sku(sku);
        let keys = self.keys.part(p);
        let mut args = vec![
            keys.base().to_owned(),
            sku.to_string(),
            opt(req.on_hand),
            opt(req.backorder_limit),
            setting(pcl),
            setting(ssa),
            opt(req.buckets.map(i64::from)),
            opt(req.safety_stock),
            match &req.allocations {
                None => String::new(),
                Some(a) if a.is_empty() => "-".to_owned(),
                Some(a) => a
                    .iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            },
            setting(match req.low_stock {
                Setting::Set(n) => Setting::Set(n.to_string()),
                Setting::Clear => Setting::Clear,
                Setting::Keep => Setting::Keep,
            }),
        ];
        let mut tries = 0;
        let reply = loop {
            tries += 1;
            let reply = self
                .write_script(p, &self.scripts.put_sku, keys.avail(), args.clone())
                .await?;
            match reply.code.as_str() {
                // A per-customer limit waits until every instance knows how
                // the SKU is spread now (a few seconds at most).
                "spread_settling" if tries < 3 => {
                    let wait: u64 = reply.fields[0].parse().context("put_sku reply")?;
                    tokio::time::sleep(Duration::from_millis(wait.clamp(1, 3_000))).await;
                }
                "spread_settling" => {
                    return Err(EngineError::Unavailable(anyhow!(
                        "the SKU's buckets changed a moment ago; set its per-customer limit again"
                    )))
                }
                // The on_hand of a spread SKU changes by adjustments; one
                // it has already (a retry of the PUT that spread it) is
                // no change.
                "spread_on_hand" if tries < 3 => {
                    let now = self.sku(sku).await?.map(|v| v.on_hand);
                    if now != req.on_hand {
                        break reply;
                    }
                    args[2] = String::new();
                }
                _ => break reply,
            }
        };
        let f = &reply.fields;
        match reply.code.as_str() {
            "created" | "updated" => {
                let mut view =
                    sku_view(sku, [&f[0], &f[1], &f[2], &f[3], &f[4], &f[7], field(f, 8)])?;
                let (buckets, span) = replies::buckets(&f[6])?;
                let spread = Spread {
                    buckets: buckets as u16,
                    span: span as u16,
                };
                self.note_spread(sku, spread);
                if spread.span > 1 {
                    // Done now so holds may go there at once; done by the
                    // balancer anyway (the change itself is made).
                    if let Err(e) = self.set_up_buckets(sku, spread).await {
                        tracing::warn!(%sku, error = ?e, "buckets not set up yet; the balancer will");
                    }
                    if let Ok(Some(v)) = self.sku(sku).await {
                        view = v;
                    }
                }
                Ok(SkuPut {
                    view,
                    created: reply.code == "created",
                    outbox: f[5].parse().ok().map(|id| (p, id)),
                })
            }
            "insufficient" => Err(Rejection::BelowHeld {
                sku: sku.clone(),
                requested: f[0].parse().context("put_sku reply")?,
                held: f[1].parse().context("put_sku reply")?,
            }
            .into()),
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    /// Changes a SKU's on_hand by `delta`, once per adjustment id.
    #[tracing::instrument(skip_all, fields(sku = %sku))]
    pub async fn adjust(
        &self,
        sku: &Sku,
        req: &AdjustmentRequest,
    ) -> Result<Adjusted, EngineError> {
        let first = self.adjust_bucket_0(sku, req).await;
        let Some(spread) = self.spread_of(sku) else {
            return first;
        };
        // Spread over buckets: a decrease may need the units available in
        // the others; the answer shows the SKU's totals.
        let done = match first {
            Err(EngineError::Rejected(Rejection::Insufficient(_))) => {
                self.gather(sku, spread, self.keys.of_sku(sku), i64::MAX / 4)
                    .await?;
                match self.adjust_bucket_0(sku, req).await {
                    Err(EngineError::Rejected(Rejection::Insufficient(_))) => {
                        let v = self.sku(sku).await?.ok_or(Rejection::SkuNotFound)?;
                        return Err(Rejection::Insufficient(vec![Shortage {
                            sku: sku.clone(),
                            requested: -req.delta,
                            available: (v.on_hand - v.held).max(0),
                        }])
                        .into());
                    }
                    other => other?,
                }
            }
            other => other?,
        };
        match done {
            Adjusted::Applied(_, entry) => {
                let view = self.sku(sku).await?.ok_or(Rejection::SkuNotFound)?;
                Ok(Adjusted::Applied(view, entry))
            }
            before => Ok(before),
        }
    }

    async fn adjust_bucket_0(
        &self,
        sku: &Sku,
        req: &AdjustmentRequest,
    ) -> Result<Adjusted, EngineError> {
        let p = self.keys.of_sku(sku);
        let keys = self.keys.part(p);
        let args = vec![
            keys.base().to_owned(),
            sku.to_string(),
            req.adjustment_id.clone(),
            req.delta.to_string(),
            req.reason.clone().unwrap_or_default(),
        ];
        let reply = self
            .write_script(p, &self.scripts.adjust, keys.avail(), args)
            .await?;
        let f = &reply.fields;
        match reply.code.as_str() {
            "ok" => Ok(Adjusted::Applied(
                sku_view(sku, [&f[0], &f[1], &f[2], &f[3], &f[4], &f[6], field(f, 7)])?,
                (p, f[5].parse().map_err(|m: String| anyhow!(m))?),
            )),
            "repeat" => Ok(Adjusted::Before(
                Sku::parse(&f[0]).map_err(|m| anyhow!(m))?,
                f[1].parse().context("adjust reply")?,
            )),
            "not_found" => Err(Rejection::SkuNotFound.into()),
            "insufficient" => {
                let on_hand: i64 = f[0].parse().context("adjust reply")?;
                let held: i64 = f[1].parse().context("adjust reply")?;
                // Units asked to take out, against units that may be taken.
                Err(Rejection::Insufficient(vec![Shortage {
                    sku: sku.clone(),
                    requested: -req.delta,
                    available: (on_hand - held).max(0),
                }])
                .into())
            }
            _ => Err(rejection_or_bug(&reply)),
        }
    }

    /// Puts returned units back into on_hand, once per return id (and
    /// partition), `pools` of them (sku, channel, units) into the channel's
    /// allocation; the outbox entries of the partitions this call did.
    pub async fn restock(
        &self,
        return_id: &str,
        order_id: &OrderId,
        lines: &[(Sku, i64)],
        pools: &[(Sku, String, i64)],
    ) -> Result<Vec<EntryRef>, EngineError> {
        let mut entries = Vec::new();
        for (p, lines) in self.by_partition(lines) {
            let keys = self.keys.part(p);
            let pooled: Vec<String> = pools
                .iter()
                .filter(|(s, _, _)| lines.iter().any(|(l, _)| l == s))
                .map(|(s, c, n)| format!("{s} {c} {n}"))
                .collect();
            let args = vec![
                keys.base().to_owned(),
                return_id.to_owned(),
                order_id.to_string(),
                pairs(&lines),
                pooled.join(" "),
            ];
            let reply = self
                .write_script(p, &self.scripts.restock, keys.return_mark(return_id), args)
                .await?;
            match reply.code.as_str() {
                "ok" => entries.push((p, reply.fields[0].parse().map_err(|m: String| anyhow!(m))?)),
                "repeat" => {}
                _ => return Err(rejection_or_bug(&reply)),
            }
        }
        Ok(entries)
    }

    /// One SKU's live view, `None` if it was never set up. Read in one
    /// script (`read_sku.lua`), so the view is of one instant.
    pub async fn sku(&self, sku: &Sku) -> Result<Option<SkuView>, EngineError> {
        let p = self.keys.of_sku(sku);
        let keys = self.keys.part(p);
        let args = vec![keys.base().to_owned(), sku.to_string()];
        let reply = self
            .script(p, &self.scripts.read_sku, keys.avail(), args)
            .await?;
        if reply.code != "ok" {
            return Ok(None);
        }
        let f = &reply.fields;
        let mut view = sku_view(sku, [&f[0], &f[1], &f[2], &f[3], &f[4], &f[5], field(f, 7)])?;
        // Spread over buckets: the others added, each read at its instant.
        let (buckets, span) = replies::buckets(&f[6])?;
        if span > 1 {
            self.add_buckets(sku, span as u16, &mut view.on_hand, &mut view.held)
                .await?;
        }
        view.buckets = buckets as u16;
        Ok(Some(view))
    }

    /// What a reservation may hold of each SKU (`None`: never set up): of
    /// `channel`'s, the shared pool and the channel's allocation; of one
    /// without, the shared pool. A SKU spread over buckets (its own
    /// partition says so, read with its available count) adds up all of
    /// them.
    pub async fn availability(
        &self,
        skus: &[Sku],
        channel: Option<&str>,
    ) -> Result<Vec<Option<i64>>, EngineError> {
        if self.partitions().count() == 1 {
            let answer = self
                .available_in(Partition(0), skus, channel, false)
                .await?;
            return Ok(answer.into_iter().map(|(a, _)| a).collect());
        }
        let mut groups: BTreeMap<Partition, Vec<(usize, Sku)>> = BTreeMap::new();
        for (i, sku) in skus.iter().enumerate() {
            groups
                .entry(self.keys.of_sku(sku))
                .or_default()
                .push((i, sku.clone()));
        }
        let reads = groups.iter().map(|(p, group)| {
            let names: Vec<Sku> = group.iter().map(|(_, s)| s.clone()).collect();
            async move { self.available_in(*p, &names, channel, true).await }
        });
        let answers = futures_util::future::try_join_all(reads).await?;
        let mut out = vec![None; skus.len()];
        for (group, answer) in groups.values().zip(answers) {
            for ((i, sku), (a, bk)) in group.iter().zip(answer) {
                out[*i] = match (a, bk) {
                    (Some(_), Some(bk)) => {
                        let (buckets, span) = replies::buckets(&bk)?;
                        let spread = Spread {
                            buckets: buckets as u16,
                            span: span as u16,
                        };
                        Some(self.available_over_buckets(sku, spread).await?)
                    }
                    (a, _) => a,
                };
            }
        }
        Ok(out)
    }

    /// Available counts of SKUs of partition `p` (with `channel`'s
    /// allocations added), and (with `spread`) how each is spread over
    /// buckets, if it is. One round trip.
    async fn available_in(
        &self,
        p: Partition,
        skus: &[Sku],
        channel: Option<&str>,
        spread: bool,
    ) -> Result<Vec<(Option<i64>, Option<String>)>, EngineError> {
        let keys = self.keys.part(p);
        let names: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(keys.avail()).arg(&names);
        if let Some(channel) = channel {
            pipe.cmd("HMGET").arg(keys.pool_avail(channel)).arg(&names);
        }
        if spread {
            pipe.cmd("HMGET").arg(keys.buckets()).arg(&names);
        }
        let mut replies: Vec<redis::Value> = self
            .run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await?;
        let column = |v: redis::Value| -> Result<Vec<Option<String>>, EngineError> {
            Ok(redis::FromRedisValue::from_redis_value(&v).context("availability reply")?)
        };
        let bk = if spread {
            column(replies.pop().context("availability reply")?)?
        } else {
            Vec::new()
        };
        let pooled = if channel.is_some() {
            column(replies.pop().context("availability reply")?)?
        } else {
            Vec::new()
        };
        let avail = column(replies.pop().context("availability reply")?)?;
        let count = |v: &Option<String>| -> Result<Option<i64>, EngineError> {
            Ok(v.as_deref()
                .map(str::parse::<i64>)
                .transpose()
                .context("availability count")?
                .map(|n| n.max(0)))
        };
        avail
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let pool = pooled.get(i).map(count).transpose()?.flatten();
                let a = count(a)?.map(|a| a + pool.unwrap_or(0));
                Ok((a, bk.get(i).cloned().flatten()))
            })
            .collect()
    }
}

/// Reply field `i`, or '' when the reply has fewer fields.
fn field(f: &[String], i: usize) -> &str {
    f.get(i).map_or("", String::as_str)
}
