//! End-to-end tests over HTTP against real Redis and real Postgres
//! (started by scripts/test.sh). Each test spawns its own app with its own
//! database and Redis key prefix.

mod adjustments;
mod allocations;
mod auth;
mod buckets;
mod concurrency;
mod drain;
mod events;
mod expiry;
mod faults;
mod flash_sale;
mod health;
mod helpers;
mod ledger;
mod operations;
mod orders;
mod overview;
mod partitions;
mod randomized;
mod reconcile;
mod recovery;
mod reservations;
mod restarts;
mod returns;
mod skus;
mod validation;
mod webhooks;
