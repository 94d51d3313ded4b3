//! `event-latency`: how long after a commit its `hold.committed` event
//! reaches an SSE client and a webhook receiver, under load; then the
//! same load while the receiver is down, and what it gets once back.
//!
//! The service runs in this process on a runtime of its own; `--clients`
//! buyers each reserve one unit of a random SKU and commit it, over and
//! over, for `--seconds`; one SSE client (`types=hold.committed`) and one
//! webhook subscription (a receiver in this process, answering 204) follow.
//! The delay of an event is from the moment its commit request was sent to
//! the moment it arrived (the event is written by the commit's script,
//! before its Postgres write and its 201). Phase two stops the receiver
//! for `--down-seconds` under the same load, starts it on the same port
//! and waits until it has every event: each delivered, in stream order per
//! SKU, duplicates counted.

use crate::suite::{build_on, drop_deployment, fresh_deployment, service_runtime};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Buyers reserving and committing at once.
    #[arg(long, default_value_t = 200)]
    pub clients: usize,
    /// Length of the load phase.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// How long the receiver is down in phase two.
    #[arg(long, default_value_t = 30)]
    pub down_seconds: u64,
    /// SKUs the buyers pick from.
    #[arg(long, default_value_t = 200)]
    pub skus: usize,
    /// Redis (a fresh key prefix is used and removed).
    #[arg(long, default_value = "redis://127.0.0.1:6380/")]
    pub redis_url: String,
    /// Postgres server (a fresh database is created and dropped).
    #[arg(long, default_value = "postgres://stockhold@127.0.0.1:5433/postgres")]
    pub database_url: String,
    /// A seconds-long run at small sizes (the test suite's).
    #[arg(long)]
    pub smoke: bool,
}

/// Arrivals at the receiver: (webhook-id, reservation id, sku, when).
#[derive(Default)]
struct Inbox {
    got: Vec<(String, String, String, Instant)>,
}

async fn receive(body: String, inbox: web::Data<Mutex<Inbox>>) -> HttpResponse {
    let at = Instant::now();
    let e: Value = serde_json::from_str(&body).unwrap_or_default();
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    inbox.lock().unwrap_or_else(|e| e.into_inner()).got.push((
        text(&e["id"]),
        text(&e["reservation_id"]),
        text(&e["skus"][0]),
        at,
    ));
    HttpResponse::NoContent().finish()
}

/// A receiver on `addr` (port 0: any), and its handle.
fn receiver(
    addr: SocketAddr,
    inbox: Arc<Mutex<Inbox>>,
) -> anyhow::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr()?;
    let data = web::Data::from(inbox);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

/// Commits: reservation id -> (sku, when its commit request was sent).
type Sent = Arc<Mutex<HashMap<String, (String, Instant)>>>;

/// `clients` buyers reserving and committing for `seconds`: the errors,
/// and each commit's reservation -> (sku, when its request was sent).
async fn load(
    base: &str,
    clients: usize,
    skus: usize,
    seconds: u64,
) -> (u64, HashMap<String, (String, Instant)>) {
    let sent: Sent = Arc::default();
    let stop = Instant::now() + Duration::from_secs(seconds);
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, base, sent) = (http.clone(), base.to_owned(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut errors = 0u64;
            while Instant::now() < stop {
                let sku = format!("LAT-{:04}", rand::thread_rng().gen_range(0..skus));
                let held = http
                    .post(format!("{base}/v1/reservations"))
                    .bearer_auth("dev-storefront-key")
                    .json(&json!({ "lines": [{ "sku": sku, "qty": 1 }] }))
                    .send()
                    .await;
                let id = match held {
                    Ok(r) if r.status() == 201 => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v["id"].as_str().map(str::to_owned)),
                    _ => None,
                };
                let Some(id) = id else {
                    errors += 1;
                    continue;
                };
                sent.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.clone(), (sku, Instant::now()));
                let committed = http
                    .post(format!("{base}/v1/reservations/{id}/commit"))
                    .bearer_auth("dev-storefront-key")
                    .json(&json!({}))
                    .send()
                    .await;
                if !matches!(committed, Ok(r) if r.status().is_success()) {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for t in tasks {
        errors += t.await.unwrap_or(1);
    }
    let sent = sent.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (errors, sent)
}

/// Follows `/v1/events?types=hold.committed`: reservation id -> arrival.
fn follow_sse(
    base: &str,
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
) -> tokio::task::JoinHandle<()> {
    let url = format!("{base}/v1/events?types=hold.committed");
    tokio::spawn(async move {
        let Ok(mut res) = reqwest::Client::new()
            .get(url)
            .bearer_auth("dev-admin-key")
            .send()
            .await
        else {
            return;
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = res.chunk().await {
            let at = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                for line in block.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        let e: Value = serde_json::from_str(data).unwrap_or_default();
                        if let Some(id) = e["reservation_id"].as_str() {
                            arrivals
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.to_owned(), at);
                        }
                    }
                }
            }
        }
    })
}

fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "{} | {:.1} | {:.1} | {:.1} | {:.1}",
        h.len(),
        ms(0.5),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    )
}

pub async fn run(mut opts: Options) -> anyhow::Result<()> {
    if opts.smoke {
        opts.clients = opts.clients.min(8);
        opts.seconds = opts.seconds.min(2);
        opts.down_seconds = opts.down_seconds.min(2);
        opts.skus = opts.skus.min(20);
    }
    let (admin, db, mut settings) =
        fresh_deployment(&opts.redis_url, &opts.database_url, "latency").await?;
    settings.application.port = 0;
    settings.auth.allow_development_keys = true;
    let shutdown = CancellationToken::new();
    let service_rt = service_runtime()?;
    let result = measure(&opts, &settings, &shutdown, &service_rt).await;
    shutdown.cancel();
    service_rt.shutdown_background();
    let cleaned = drop_deployment(&admin, &db, &settings).await;
    result?;
    cleaned
}

async fn measure(
    opts: &Options,
    settings: &stockhold::configuration::Settings,
    shutdown: &CancellationToken,
    service_rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let app = build_on(service_rt, settings, shutdown).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let workers = app.workers();
    service_rt.spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    for i in 0..opts.skus {
        let res = http
            .put(format!("{base}/v1/skus/LAT-{i:04}"))
            .bearer_auth("dev-admin-key")
            .json(&json!({ "on_hand": 1_000_000_000 }))
            .send()
            .await?;
        anyhow::ensure!(
            res.status().is_success(),
            "setting up a SKU: {}",
            res.status()
        );
    }
    let inbox = Arc::new(Mutex::new(Inbox::default()));
    let (addr, mut handle) = receiver("127.0.0.1:0".parse()?, inbox.clone())?;
    let hook: Value = http
        .post(format!("{base}/v1/admin/webhooks"))
        .bearer_auth("dev-admin-key")
        .json(&json!({ "url": format!("http://{addr}/hook"), "types": ["hold.committed"] }))
        .send()
        .await?
        .json()
        .await?;
    let hook_id = hook["id"].as_str().context("no webhook id")?.to_owned();
    let sse_arrivals = Arc::new(Mutex::new(HashMap::new()));
    let sse = follow_sse(&base, sse_arrivals.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    println!(
        "# Event delivery under load\n\n\
         stockhold in this process ({workers} actix workers, 1 partition), a webhook receiver and one SSE client in this process; \
         {} buyers each reserving 1 unit of one of {} SKUs and committing it, back to back; Redis {}; release build.\n",
        opts.clients, opts.skus, opts.redis_url
    );

    // Phase one: the delay from a commit to its event.
    let (errors, commits) = load(&base, opts.clients, opts.skus, opts.seconds).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && inbox.lock().unwrap_or_else(|e| e.into_inner()).got.len() < commits.len()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut to_sse = crate::load::histogram();
    let mut to_hook = crate::load::histogram();
    {
        let arrivals = sse_arrivals.lock().unwrap_or_else(|e| e.into_inner());
        for (id, (_, at)) in &commits {
            if let Some(got) = arrivals.get(id) {
                let _ = to_sse.record(got.saturating_duration_since(*at).as_micros() as u64);
            }
        }
        let got = inbox.lock().unwrap_or_else(|e| e.into_inner());
        let first: HashMap<&str, Instant> = got
            .got
            .iter()
            .rev()
            .map(|(_, r, _, at)| (r.as_str(), *at))
            .collect();
        for (id, (_, at)) in &commits {
            if let Some(got) = first.get(id.as_str()) {
                let _ = to_hook.record(got.saturating_duration_since(*at).as_micros() as u64);
            }
        }
    }
    let rate = commits.len() as f64 / opts.seconds as f64;
    println!(
        "## Delay from a commit request to its hold.committed event ({} s, {} commits, {rate:.0}/s, {errors} errors)\n\n\
         | reaching | events | p50 ms | p99 ms | p99.9 ms | max ms |\n| --- | ---: | ---: | ---: | ---: | ---: |\n\
         | an SSE client | {} |\n| a webhook receiver | {} |\n",
        opts.seconds,
        commits.len(),
        percentiles(&to_sse),
        percentiles(&to_hook),
    );

    // Phase two: the receiver down under the same load, then back.
    let before = inbox.lock().unwrap_or_else(|e| e.into_inner()).got.len();
    handle.stop(false).await;
    let down_at = Instant::now();
    let (errors, missed) = load(&base, opts.clients, opts.skus, opts.down_seconds).await;
    let (_, again) = receiver(addr, inbox.clone())?;
    handle = again;
    let up_at = Instant::now();
    let deadline = up_at + Duration::from_secs(300);
    let caught_up = loop {
        let all_in = {
            let got = inbox.lock().unwrap_or_else(|e| e.into_inner());
            let have: std::collections::HashSet<&str> = got.got[before..]
                .iter()
                .map(|(_, r, _, _)| r.as_str())
                .collect();
            missed.keys().all(|id| have.contains(id.as_str()))
        };
        if all_in {
            break Some(Instant::now());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after = inbox.lock().unwrap_or_else(|e| e.into_inner()).got[before..].to_vec();
    let after = after.as_slice();
    let mut firsts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut duplicates = 0;
    for (i, (eid, _, _, _)) in after.iter().enumerate() {
        if firsts.insert(eid.as_str(), i).is_some() {
            duplicates += 1;
        }
    }
    // In order per SKU: each SKU's events arrive in stream id order.
    let mut last: HashMap<&str, (i64, i64)> = HashMap::new();
    let mut out_of_order = 0;
    for (eid, _, sku, _) in after {
        let stream_id = eid
            .split_once('-')
            .and_then(|(_, s)| s.split_once('-'))
            .and_then(|(ms, seq)| Some((ms.parse().ok()?, seq.parse().ok()?)))
            .unwrap_or((0, 0));
        let prev = last.entry(sku.as_str()).or_insert((0, 0));
        if stream_id < *prev {
            out_of_order += 1;
        } else {
            *prev = stream_id;
        }
    }
    let delivered = missed
        .keys()
        .filter(|id| after.iter().any(|(_, r, _, _)| r == *id))
        .count();
    println!(
        "## A receiver down for {} s under the same load\n\n\
         | commits while it was down | delivered after | duplicates | out of order per SKU | errors | caught up after it came back |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | {} | {delivered} | {duplicates} | {out_of_order} | {errors} | {} |\n",
        up_at.duration_since(down_at).as_secs(),
        missed.len(),
        caught_up.map_or("not within 300 s".to_owned(), |t| format!(
            "{:.1} s",
            t.duration_since(up_at).as_secs_f64()
        )),
    );
    let res: Value = http
        .get(format!("{base}/v1/admin/webhooks/{hook_id}"))
        .bearer_auth("dev-admin-key")
        .send()
        .await?
        .json()
        .await?;
    println!(
        "Subscription after: status {}, delivered {}, failures {}.",
        res["status"], res["delivered"], res["failures"]
    );
    handle.stop(false).await;
    sse.abort();
    anyhow::ensure!(
        delivered == missed.len() && out_of_order == 0,
        "not every event was delivered in order"
    );
    Ok(())
}
