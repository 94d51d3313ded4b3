//! stockhold: a stock reservation service. Baskets hold stock atomically in
//! Redis, holds expire by themselves, and commits become sales that are
//! written to Postgres, the permanent record Redis can be rebuilt from.
//!
//! # Layout
//!
//! - [`configuration`]: settings from `configuration/*.toml` and `STOCKHOLD_…`
//!   environment variables, validated at start.
//! - [`domain`]: the parsed types (`Sku`, quantities, TTLs, roles, holds,
//!   orders, outbox events) and their rules; no I/O.
//! - [`engine`]: the Redis stock engine: key naming, the shared connections
//!   and the Lua scripts in `lua/`, one per operation; every change of live
//!   counts happens there.
//! - [`ledger`]: the Postgres ledger: orders, lines, stock movements and the
//!   outbox watermark, written idempotently, commits by group commit.
//! - [`service`]: operations spanning both: a change in Redis, then its
//!   outbox entry written to Postgres before the answer.
//! - [`metrics`]: the Prometheus recorder and metric names.
//! - [`reconciler`]: background duties (the hold reaper, the outbox drain, the
//!   rebuild guard) and rebuild/reconcile.
//! - [`http`]: the actix-web API of `API.md`: extractors, handlers, problem+json.
//! - [`startup`]: builds pools, binds the listener and runs the application.
//! - [`telemetry`]: the tracing subscriber.
//! - [`shutdown`]: the one shutdown signal the server and the tasks share.
//! - [`demo`]: the demo catalogue the development set-up loads.
#![forbid(unsafe_code)]

pub mod configuration;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod events;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod reconciler;
pub mod service;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
