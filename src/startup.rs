//! Builds the application: pools, migrations, the listener (bound first, so
//! port 0 works in tests), the HTTP server and the background tasks.

use crate::configuration::Settings;
use crate::engine::Engine;
use crate::http::{self, auth::ApiKeys};
use crate::ledger::Ledger;
use crate::reconciler::{self, Balancer, Drain, Readiness, Reaper, RebuildGuard, Reconciler};
use crate::service::Stock;
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often each instance reads which SKUs are spread over buckets.
const SPREAD_EVERY: Duration = Duration::from_secs(1);

/// How often each instance trims the events streams.
const EVENTS_TRIM_EVERY: Duration = Duration::from_secs(10);

/// How long start-up waits for Postgres to accept the migrations.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(30);

/// A built, not yet running, stockhold.
pub struct Application {
    port: u16,
    workers: usize,
    server: Server,
    tasks: Vec<JoinHandle<()>>,
    shutdown: CancellationToken,
    stock: Stock,
}

impl Application {
    /// Connects, migrates, binds and starts everything; stops when `shutdown`
    /// is cancelled.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        crate::metrics::handle();
        let stock = connect(&settings).await?;
        // A Redis that is not up yet is checked by the rebuild guard later.
        if let Ok(Err(mismatch)) = stock.engine.check_layout().await {
            anyhow::bail!(mismatch);
        }
        let app = &settings.application;
        let listener = bind(&app.host, app.port, app.backlog)
            .with_context(|| format!("binding {}:{}", app.host, app.port))?;
        let port = listener.local_addr()?.port();

        let reconciler = Reconciler::new(stock.engine.clone(), stock.ledger.clone());
        let readiness = Arc::new(Readiness::default());
        let reconciler_data = web::Data::new(reconciler.clone());
        let stock_data = web::Data::new(stock.clone());
        let keys = web::Data::new(ApiKeys::new(&settings.auth));
        let limits = web::Data::new(settings.limits.limits());
        let idempotency = web::Data::new(stock.engine.idempotency());
        let app_readiness = web::Data::from(readiness.clone());
        let hub = web::Data::new(crate::events::Hub::new(
            &settings.redis,
            stock.engine.clone(),
            shutdown.clone(),
        )?);
        let events_config = web::Data::new(http::events::EventsConfig {
            heartbeat: Duration::from_secs(settings.events.heartbeat_seconds.max(1)),
        });
        let events_hub = hub.get_ref().clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(stock_data.clone())
                .app_data(keys.clone())
                .app_data(limits.clone())
                .app_data(idempotency.clone())
                .app_data(app_readiness.clone())
                .app_data(reconciler_data.clone())
                .app_data(hub.clone())
                .app_data(events_config.clone())
                .wrap(actix_web::middleware::from_fn(http::observe::observe))
                .configure(http::configure)
                .default_service(web::to(http::not_found))
        })
        .listen(listener)?
        .disable_signals()
        .client_request_timeout(Duration::from_millis(
            settings.application.client_request_timeout_ms,
        ))
        .shutdown_timeout(settings.application.shutdown_timeout_seconds);
        let workers = match settings.application.workers {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        server = server
            .workers(workers)
            .max_connections(settings.application.max_connections.div_ceil(workers));
        let server = server.run();

        let instance = uuid::Uuid::new_v4().to_string();
        // Which SKUs are spread over buckets, before the start-up reconcile
        // and the first reserve (partitions not rebuilt yet say nothing).
        if let Err(e) = stock.engine.refresh_spread().await {
            tracing::warn!(error = ?e, "could not read the SKUs spread over buckets yet");
        }
        reconciler
            .start_up(&instance)
            .await
            .context("rebuilding Redis from the ledger")?;
        if let Err(e) = stock.engine.refresh_spread().await {
            tracing::warn!(error = ?e, "could not read the SKUs spread over buckets yet");
        }
        let guard = RebuildGuard::new(reconciler, instance.clone(), readiness);
        guard.try_execute_task().await?;
        let mut tasks = spawn_background(&settings, &stock, &shutdown);
        // Webhook deliveries: each subscription by the instance holding its
        // lease; every second, subscriptions nobody delivers are taken up.
        let dispatcher = crate::events::webhooks::Dispatcher::new(
            events_hub,
            stock.ledger.clone(),
            instance,
            settings.webhooks.clone(),
            shutdown.clone(),
        )?;
        tasks.push(reconciler::spawn(
            "webhooks",
            Duration::from_secs(1),
            None,
            shutdown.clone(),
            move || {
                let dispatcher = dispatcher.clone();
                async move { dispatcher.try_execute_task().await }
            },
        ));
        tasks.push(reconciler::spawn(
            "rebuild-guard",
            Duration::from_secs(1),
            Some(stock.engine.rebuild_wanted()),
            shutdown.clone(),
            move || {
                let guard = guard.clone();
                async move { guard.try_execute_task().await }
            },
        ));
        tracing::info!(port, profile = ?settings.profile, "stockhold is listening");
        Ok(Application {
            port,
            workers,
            server,
            tasks,
            shutdown,
            stock,
        })
    }

    /// The port the API listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The actix workers serving requests.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The engine and ledger this application runs on.
    pub fn stock(&self) -> &Stock {
        &self.stock
    }

    /// Serves until the shutdown signal, then stops accepting, lets in-flight
    /// requests finish and stops the background tasks.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle: ServerHandle = self.server.handle();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.stop(true).await;
        });
        let served = self.server.await;
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        tracing::info!("stockhold stopped");
        served.context("running the HTTP server")
    }
}

/// A listening socket with room for `backlog` connections not yet accepted
/// (a flash sale opens thousands at once; the OS default is 128).
fn bind(host: &str, port: u16, backlog: i32) -> anyhow::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))?
        .next()
        .context("the host resolves to no address")?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// As `connect`, for the command-line tools: also waits until Redis holds
/// the state rebuilt from the ledger, rebuilding it when no service has
/// (a new Redis on the first run, or one that lost its data).
pub async fn connect_ready(settings: &Settings) -> anyhow::Result<Stock> {
    let stock = connect(settings).await?;
    let instance = format!("cli-{}", uuid::Uuid::new_v4());
    Reconciler::new(stock.engine.clone(), stock.ledger.clone())
        .ensure_rebuilt(&instance)
        .await
        .context("rebuilding Redis from the ledger")?;
    Ok(stock)
}

/// Builds the engine and the ledger and applies the migrations, waiting a
/// while for Postgres if it is still starting.
pub async fn connect(settings: &Settings) -> anyhow::Result<Stock> {
    let engine = Engine::new(&settings.redis)?.with_events(settings.events.enabled);
    let ledger = Ledger::new(&settings.database)?;
    let deadline = tokio::time::Instant::now() + MIGRATION_PATIENCE;
    loop {
        match ledger.migrate().await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = ?e, "migrations failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e),
        }
    }
    let db = &settings.database;
    Ok(Stock::new(
        engine,
        ledger,
        db.commit_writers,
        db.commit_batch,
    ))
}

fn spawn_background(
    settings: &Settings,
    stock: &Stock,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let r = &settings.reconciler;
    let reaper = Reaper::new(stock.engine.clone(), stock.ledger.clone(), r.reaper_batch);
    let balancer = Balancer::new(stock.engine.clone());
    let drain = Drain::new(
        stock.clone(),
        r.drain_batch,
        settings.database.commit_writers,
        Duration::from_secs(r.outbox_retention_seconds),
    );
    vec![
        reconciler::spawn(
            "reaper",
            Duration::from_millis(r.reaper_interval_ms),
            None,
            shutdown.clone(),
            move || {
                let reaper = reaper.clone();
                async move { reaper.try_execute_task().await }
            },
        ),
        // Which SKUs are spread over buckets, read from Redis every second
        // on a task of its own (put_sku.lua's SPREAD_SETTLE_MS counts on it).
        reconciler::spawn("spread", SPREAD_EVERY, None, shutdown.clone(), {
            let engine = stock.engine.clone();
            move || {
                let engine = engine.clone();
                async move {
                    engine.refresh_spread().await?;
                    Ok((reconciler::Outcome::Idle, false))
                }
            }
        }),
        reconciler::spawn(
            "balancer",
            Duration::from_millis(r.balance_interval_ms),
            None,
            shutdown.clone(),
            move || {
                let balancer = balancer.clone();
                async move { balancer.try_execute_task().await }
            },
        ),
        // Events older than the retention window leave the streams.
        reconciler::spawn("events-trim", EVENTS_TRIM_EVERY, None, shutdown.clone(), {
            let engine = stock.engine.clone();
            let keep = Duration::from_secs(settings.events.retention_seconds);
            let most = settings.events.max_per_partition;
            move || {
                let engine = engine.clone();
                async move {
                    for p in engine.partitions().all() {
                        engine.trim_events(p, keep, most).await?;
                    }
                    Ok((reconciler::Outcome::Idle, false))
                }
            }
        }),
        reconciler::spawn(
            "outbox-drain",
            Duration::from_millis(r.drain_interval_ms),
            None,
            shutdown.clone(),
            move || {
                let drain = drain.clone();
                async move { drain.try_execute_task().await }
            },
        ),
    ]
}
