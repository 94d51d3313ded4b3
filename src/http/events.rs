//! `GET /v1/events`: the stock events as Server-Sent Events, live, or from
//! a position a client saw before (`Last-Event-ID`) while the streams still
//! have what came after it.

use super::auth::Caller;
use super::error::ApiError;
use super::schemas::Problem;
use super::views::EventView;
use crate::domain::{Event, EventKind, EventPosition, FieldError, Role, Sku};
use crate::events::Hub;
use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/v1/events", "GET").route(web::get().to(events)));
}

/// How the event stream is served.
#[derive(Debug, Clone, Copy)]
pub struct EventsConfig {
    /// A comment is sent this often when no event is, so proxies and
    /// clients see the connection is alive.
    pub heartbeat: Duration,
}

/// Most SKUs one stream may filter on.
const MAX_SKUS: usize = 100;
/// Events one catch-up read takes from a partition.
const CATCH_UP_BATCH: usize = 500;

/// Which events a client asked for (and may read).
struct Filter {
    kinds: HashSet<EventKind>,
    skus: Option<HashSet<String>>,
}

impl Filter {
    fn wants(&self, e: &Event) -> bool {
        self.kinds.contains(&e.kind)
            && self
                .skus
                .as_ref()
                .is_none_or(|skus| e.skus().iter().any(|s| skus.contains(*s)))
    }
}

#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(
        ("types" = Option<String>, Query, description = "comma-separated event types (default: every type the key may read; a storefront or callcentre key may read the sku.* types only)"),
        ("sku" = Option<String>, Query, description = "comma-separated SKUs (up to 100): only events about one of them"),
        ("last_event_id" = Option<String>, Query, description = "resume after this position (as the Last-Event-ID header, which takes precedence)"),
        ("Last-Event-ID" = Option<String>, Header, description = "resume after this position: the `id` of the last message received"),
    ),
    responses(
        (status = 200, description = "text/event-stream: each message has `id` (the position to resume from), `event` (the type) and `data` (an Event as JSON); a `: keep-alive` comment when nothing else is sent for the heartbeat interval", body = EventView, content_type = "text/event-stream"),
        (status = 401, description = "unauthorized: missing or unknown key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "forbidden: a type the key may not read", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "event_id_too_old: events after that position are gone (older than the retention window, or lost with Redis's data); reconnect without it and read the current counts", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "validation_failed: an unknown type, a bad SKU or position, or another parameter", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable: Redis unreachable", body = Problem, content_type = "application/problem+json")
    ),
    security(("bearer" = []))
)]
/// `GET /v1/events?types=&sku=`: the events as they happen, after those
/// the client missed since `Last-Event-ID`.
pub(crate) async fn events(
    caller: Caller,
    hub: web::Data<Hub>,
    config: web::Data<EventsConfig>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !hub.engine().events_on() {
        return Err(ApiError::NotFound("event stream (events.enabled is false)"));
    }
    let partitions = hub.engine().partitions();
    let admin = caller.role.includes(Role::Admin);
    let mut kinds: Option<HashSet<EventKind>> = None;
    let mut skus: Option<HashSet<String>> = None;
    let mut position = None;
    let mut errors = Vec::new();
    let mut forbidden = false;
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match name.as_ref() {
            "types" => {
                let set = kinds.get_or_insert_with(HashSet::new);
                for t in value.split(',').filter(|t| !t.is_empty()) {
                    match t.parse::<EventKind>() {
                        Ok(k) if admin || k.is_sku() => {
                            set.insert(k);
                        }
                        Ok(_) => forbidden = true,
                        Err(m) => errors.push(FieldError::new("types", m)),
                    }
                }
            }
            "sku" => {
                let set = skus.get_or_insert_with(HashSet::new);
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    match Sku::parse(s) {
                        Ok(_) => {
                            set.insert(s.to_owned());
                        }
                        Err(m) => errors.push(FieldError::new("sku", m)),
                    }
                }
                if set.len() > MAX_SKUS {
                    errors.push(FieldError::new("sku", format!("at most {MAX_SKUS} SKUs")));
                }
            }
            "last_event_id" => position = Some(value.into_owned()),
            other => errors.push(FieldError::new(other, "is not a known parameter")),
        }
    }
    if let Some(id) = req.headers().get("last-event-id") {
        position = Some(id.to_str().unwrap_or("\u{fffd}").to_owned());
    }
    let position = match position.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => match EventPosition::parse(text, partitions) {
            Ok(p) => Some(p),
            Err(m) => {
                errors.push(FieldError::new("last_event_id", m));
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    if forbidden {
        return Err(ApiError::Forbidden(Role::Admin));
    }
    let kinds = match kinds {
        Some(k) if !k.is_empty() => k,
        _ => EventKind::ALL
            .into_iter()
            .filter(|k| admin || k.is_sku())
            .collect(),
    };
    let filter = Filter { kinds, skus };

    // Subscribed first: whatever happens from here on is either read back
    // from the streams below or arrives live.
    let live = hub.subscribe().await?;
    let engine = hub.engine();
    let mut ends = Vec::new();
    for p in partitions.all() {
        ends.push(engine.events_extent(p).await?);
    }
    let position = match position {
        Some(from) => {
            if let Some(gone) = ends
                .iter()
                .zip(&from.0)
                .find(|(end, seen)| end.gone > **seen)
            {
                return Err(ApiError::EventsGone(format!(
                    "events after it are gone (up to {} in one partition): they are kept for the \
                     retention window, and lost if Redis loses its data",
                    gone.0.gone
                )));
            }
            from
        }
        None => EventPosition(ends.iter().map(|e| e.last).collect()),
    };

    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    // The client's first message: where it stands, so a reconnection
    // before any event resumes from here.
    let hello = format!("retry: 2000\nid: {position}\n\n");
    let _ = sender.try_send(Bytes::from(hello));
    tokio::spawn(serve(
        hub.get_ref().clone(),
        live,
        position,
        filter,
        sender,
        config.heartbeat,
    ));
    let body = futures_util::stream::unfold(receiver, |mut r| async move {
        r.recv()
            .await
            .map(|bytes| (Ok::<_, std::convert::Infallible>(bytes), r))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// Sends what the client missed, then the live events, until it goes.
async fn serve(
    hub: Hub,
    mut live: broadcast::Receiver<Arc<Event>>,
    mut position: EventPosition,
    filter: Filter,
    out: mpsc::Sender<Bytes>,
    heartbeat: Duration,
) {
    if catch_up(&hub, &mut position, &filter, &out).await.is_err() {
        return;
    }
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    loop {
        let sent = tokio::select! {
            received = live.recv() => match received {
                Ok(event) => {
                    if position.is_before(&event) {
                        position.advance(&event);
                        if filter.wants(&event) {
                            beat.reset();
                            out.send(message(&event, &position)).await.is_ok()
                        } else {
                            true
                        }
                    } else {
                        true
                    }
                }
                // Fell behind the live events: read the rest from Redis.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    catch_up(&hub, &mut position, &filter, &out).await.is_ok()
                }
                Err(broadcast::error::RecvError::Closed) => false,
            },
            _ = beat.tick() => out.send(Bytes::from_static(b": keep-alive\n\n")).await.is_ok(),
            () = out.closed() => false,
        };
        if !sent {
            return;
        }
    }
}

/// Sends every event after `position` the streams have now, partition by
/// partition. Err when the client went, Redis failed, or events after the
/// position were trimmed meanwhile (the stream then ends; the client's
/// reconnection is answered 410).
async fn catch_up(
    hub: &Hub,
    position: &mut EventPosition,
    filter: &Filter,
    out: &mpsc::Sender<Bytes>,
) -> Result<(), ()> {
    let engine = hub.engine();
    for p in engine.partitions().all() {
        loop {
            let from = position.0[p.0 as usize];
            let end = engine.events_extent(p).await.map_err(|_| ())?;
            if end.gone > from {
                return Err(());
            }
            let batch = engine
                .events_after(p, from, CATCH_UP_BATCH)
                .await
                .map_err(|_| ())?;
            for event in &batch {
                position.advance(event);
                if filter.wants(event) {
                    out.send(message(event, position)).await.map_err(|_| ())?;
                }
            }
            if batch.len() < CATCH_UP_BATCH {
                break;
            }
        }
    }
    Ok(())
}

/// One SSE message.
fn message(event: &Event, position: &EventPosition) -> Bytes {
    let data = serde_json::to_string(&EventView::from(event)).unwrap_or_default();
    Bytes::from(format!(
        "id: {position}\nevent: {}\ndata: {data}\n\n",
        event.kind
    ))
}
