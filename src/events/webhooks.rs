//! Delivering events to webhook subscriptions: at least once, in order per
//! partition (so per SKU), each request signed as Standard Webhooks says.
//!
//! Every instance runs the duty; a subscription is delivered by the one
//! holding its lease (a Postgres row lock in time: `lease_until`), which it
//! renews while it works, so two instances never deliver one subscription
//! at once unless one stalls past the lease. Each subscription's task reads
//! the events after its position straight from the streams, posts them one
//! at a time per SKU (events of distinct SKUs go out together, up to
//! IN_FLIGHT at once), and records the attempts and its new position in one
//! transaction. A failed attempt is retried after a backoff (1 s, 2 s, 4 s…
//! up to `webhooks.max_backoff_seconds`), and later events wait for it; a
//! subscription failing for `webhooks.pause_after_seconds` is paused until
//! an admin resumes it. A crash between a delivery and its record sends the
//! event again: receivers dedupe by `webhook-id`.

use super::Hub;
use crate::configuration::WebhookSettings;
use crate::domain::{signature, Event, EventPosition, StreamId, Webhook};
use crate::http::views::EventView;
use crate::ledger::{Ledger, NewDelivery, Progress};
use crate::reconciler::Outcome;
use chrono::Utc;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a subscription's lease lasts unless renewed.
const LEASE: Duration = Duration::from_secs(30);
/// Renewed this often while delivering.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Events read from a partition per step.
const BATCH: usize = 1000;
/// Most requests in flight to one subscription (events of distinct SKUs).
const IN_FLIGHT: usize = 64;
/// How often delivery records past their retention are dropped.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// The webhook duty of one instance; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    ledger: Ledger,
    http: reqwest::Client,
    owner: String,
    settings: WebhookSettings,
    running: Mutex<HashSet<Uuid>>,
    trimmed: Mutex<Option<Instant>>,
    shutdown: CancellationToken,
}

impl Dispatcher {
    /// The duty of instance `owner`.
    pub fn new(
        hub: Hub,
        ledger: Ledger,
        owner: String,
        settings: WebhookSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("stockhold-webhooks")
            .build()?;
        Ok(Dispatcher {
            inner: Arc::new(Inner {
                hub,
                ledger,
                http,
                owner,
                settings,
                running: Mutex::default(),
                trimmed: Mutex::default(),
                shutdown,
            }),
        })
    }

    /// One step: starts delivering each active subscription no instance
    /// delivers (each in a task of its own, which runs until it loses the
    /// lease, the subscription is paused or deleted, or shutdown).
    pub async fn try_execute_task(&self) -> anyhow::Result<(Outcome, bool)> {
        let inner = &self.inner;
        let trim_due = {
            let mut at = inner.trimmed.lock().unwrap_or_else(|e| e.into_inner());
            let due = at.is_none_or(|t| t.elapsed() >= TRIM_EVERY);
            if due {
                *at = Some(Instant::now());
            }
            due
        };
        if trim_due {
            let keep = Duration::from_secs(inner.settings.delivery_retention_seconds);
            inner.ledger.trim_webhook_deliveries(keep).await?;
        }
        let mut started = 0;
        for id in inner.ledger.webhooks_to_deliver(&inner.owner).await? {
            let fresh = inner
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id);
            if fresh {
                started += 1;
                tokio::spawn(deliver(inner.clone(), id));
            }
        }
        Ok(if started > 0 {
            (Outcome::Worked(started), false)
        } else {
            (Outcome::Idle, false)
        })
    }
}

/// Forgets a subscription's task when it ends, however it ends.
struct Running(Arc<Inner>, Uuid);

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.1);
    }
}

/// Delivers subscription `id` while this instance holds its lease.
async fn deliver(inner: Arc<Inner>, id: Uuid) {
    let _running = Running(inner.clone(), id);
    let mut live = match inner.hub.subscribe().await {
        Ok(live) => live,
        Err(e) => {
            tracing::warn!(webhook = %id, error = ?e, "following the events; trying again");
            return;
        }
    };
    loop {
        if inner.shutdown.is_cancelled() {
            let _ = inner.ledger.release_webhook(id, &inner.owner).await;
            return;
        }
        let step = step(&inner, id, &mut live).await;
        match step {
            Ok(true) => {}
            Ok(false) => {
                // (paused, deleted, or another instance's: let it go now)
                let _ = inner.ledger.release_webhook(id, &inner.owner).await;
                return;
            }
            Err(e) => {
                tracing::warn!(webhook = %id, error = ?e, "delivering webhooks; trying again");
                if pause(&inner, Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
}

/// Waits `d` (false) or until shutdown (true).
async fn pause(inner: &Inner, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = inner.shutdown.cancelled() => true,
    }
}

/// One step of a subscription's delivery; false when this instance should
/// stop delivering it.
async fn step(
    inner: &Inner,
    id: Uuid,
    live: &mut tokio::sync::broadcast::Receiver<Arc<Event>>,
) -> anyhow::Result<bool> {
    let Some(sub) = inner.ledger.claim_webhook(id, &inner.owner, LEASE).await? else {
        return Ok(false);
    };
    // Live events only wake the task: those already waiting are in what it
    // reads next.
    while !matches!(
        live.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty
            | tokio::sync::broadcast::error::TryRecvError::Closed)
    ) {}
    let engine = inner.hub.engine();
    let partitions = engine.partitions();
    let now = Utc::now();
    if let Some(at) = sub.next_attempt_at.filter(|at| *at > now) {
        let wait = (at - now).to_std().unwrap_or_default().min(RENEW_EVERY);
        return Ok(!pause(inner, wait).await);
    }
    let mut position = match EventPosition::parse(&sub.position, partitions) {
        Ok(p) => p,
        Err(m) => {
            // (a deployment whose partition count changed)
            let progress = Progress {
                position: sub.position.clone(),
                failures: sub.failures,
                failing_since: sub.failing_since,
                next_attempt_at: None,
                delivered: 0,
                paused: Some(format!("its position is not one of this deployment: {m}")),
            };
            inner
                .ledger
                .save_webhook_progress(id, &inner.owner, &progress, &[])
                .await?;
            return Ok(false);
        }
    };
    let mut records = Vec::new();
    let mut batch = Vec::new();
    for p in partitions.all() {
        let extent = engine.events_extent(p).await?;
        let at = position.0[p.0 as usize];
        if extent.gone > at {
            // Trimmed (or lost with Redis's data) before it was delivered.
            records.push(NewDelivery {
                event_id: format!("{}-{}", p.name(), extent.gone),
                event_type: "gap".into(),
                attempt: 1,
                status: None,
                error: Some(format!(
                    "events of {} after {at} up to {} were gone before they were delivered",
                    p.name(),
                    extent.gone
                )),
                duration_ms: 0,
                delivered: false,
            });
            position.0[p.0 as usize] = extent.gone;
        }
        batch.extend(
            engine
                .events_after(p, position.0[p.0 as usize], BATCH)
                .await?,
        );
    }
    if batch.is_empty() && records.is_empty() {
        // Nothing to send: wait for the next event (or a while).
        tokio::select! {
            _ = live.recv() => {}
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = inner.shutdown.cancelled() => return Ok(false),
        }
        return Ok(true);
    }
    let mut progress = Progress {
        position: String::new(),
        failures: sub.failures,
        failing_since: sub.failing_since,
        next_attempt_at: None,
        delivered: 0,
        paused: None,
    };
    let mut renewed = Instant::now();
    let mut next = 0; // the first event not sent (nor skipped) yet
    let mut done = vec![false; batch.len()];
    'batch: while next < batch.len() {
        if renewed.elapsed() >= RENEW_EVERY {
            if inner
                .ledger
                .claim_webhook(id, &inner.owner, LEASE)
                .await?
                .is_none()
            {
                return Ok(false);
            }
            renewed = Instant::now();
        }
        // A wave: up to IN_FLIGHT events not sent yet that share no SKU with
        // an earlier event not sent yet, sent at once; so a SKU's events go
        // out one after another, in order, and other SKUs' meanwhile.
        let mut blocked = HashSet::new();
        let mut wave = Vec::new();
        for (k, event) in batch.iter().enumerate().skip(next) {
            if done[k] {
                continue;
            }
            if !sub.wants(event.kind) {
                done[k] = true;
                continue;
            }
            // (a hold's events keep their order too, whatever their SKUs)
            let mut keys: Vec<String> = event.skus().into_iter().map(str::to_owned).collect();
            if let crate::domain::EventBody::Hold { reservation_id, .. } = &event.body {
                keys.push(format!("hold {reservation_id}"));
            }
            let free = !keys.iter().any(|k| blocked.contains(k));
            blocked.extend(keys);
            if free {
                wave.push(k);
                if wave.len() == IN_FLIGHT {
                    break;
                }
            }
        }
        let attempt = progress.failures + 1;
        let (sub_ref, batch_ref) = (&sub, &batch);
        let outcomes = futures_util::future::join_all(wave.iter().map(|&k| async move {
            let started = Instant::now();
            let outcome = post(inner, sub_ref, &batch_ref[k]).await;
            (k, outcome, started.elapsed())
        }))
        .await;
        let mut failed = None;
        for (k, outcome, took) in outcomes {
            let event = &batch[k];
            let (status, error) = match &outcome {
                Ok(status) => (Some(*status), None),
                Err((status, error)) => (*status, Some(error.clone())),
            };
            records.push(NewDelivery {
                event_id: event.id(),
                event_type: event.kind.as_str().to_owned(),
                attempt,
                status,
                error: error.clone(),
                duration_ms: took.as_millis().min(i32::MAX as u128) as i32,
                delivered: outcome.is_ok(),
            });
            match error {
                None => done[k] = true,
                Some(why) => failed = Some(why),
            }
        }
        // The position moves past the events sent (or not wanted) before
        // the first one not sent yet; sent ones after it go again with it
        // (at least once).
        let from = next;
        while next < batch.len() && done[next] {
            next += 1;
        }
        for event in &batch[from..next] {
            position.advance(event);
            if sub.wants(event.kind) {
                progress.delivered += 1;
            }
        }
        if next > from {
            progress.failures = 0;
            progress.failing_since = None;
        }
        if let Some(why) = failed {
            let now = Utc::now();
            progress.failures += 1;
            let since = *progress.failing_since.get_or_insert(now);
            let backoff = Duration::from_secs(
                2u64.saturating_pow(progress.failures.clamp(1, 30) as u32 - 1)
                    .min(inner.settings.max_backoff_seconds.max(1)),
            );
            progress.next_attempt_at = Some(now + backoff);
            let failing = (now - since).to_std().unwrap_or_default();
            if failing >= Duration::from_secs(inner.settings.pause_after_seconds) {
                progress.paused = Some(format!(
                    "every attempt failed for {} s ({} in a row); the last: {why}",
                    failing.as_secs(),
                    progress.failures,
                ));
            }
            break 'batch;
        }
    }
    progress.position = position.to_string();
    let saved = inner
        .ledger
        .save_webhook_progress(id, &inner.owner, &progress, &records)
        .await?;
    Ok(saved && progress.paused.is_none())
}

/// POSTs one event; the receiver's status, or (status, why) on failure.
async fn post(inner: &Inner, sub: &Webhook, event: &Event) -> Result<i32, (Option<i32>, String)> {
    let body = serde_json::to_string(&EventView::from(event)).map_err(|e| (None, e.to_string()))?;
    let id = event.id();
    let timestamp = Utc::now().timestamp();
    let signed = signature(&sub.secret, &id, timestamp, &body).map_err(|e| (None, e))?;
    let sent = inner
        .http
        .post(&sub.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signed)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(res) if res.status().is_success() => Ok(i32::from(res.status().as_u16())),
        Ok(res) => Err((
            Some(i32::from(res.status().as_u16())),
            format!("the receiver answered {}", res.status()),
        )),
        Err(e) if e.is_timeout() => Err((None, "no answer within webhooks.timeout_ms".into())),
        Err(e) if e.is_connect() => Err((None, format!("could not connect: {e}"))),
        Err(e) => Err((None, format!("{e}"))),
    }
}

/// The position a new subscription starts at: the end of every stream now.
pub async fn position_now(hub: &Hub) -> Result<String, crate::engine::EngineError> {
    let engine = hub.engine();
    let mut ids: Vec<StreamId> = Vec::new();
    for p in engine.partitions().all() {
        ids.push(engine.events_extent(p).await?.last);
    }
    Ok(EventPosition(ids).to_string())
}
