//! The fault suite: the real `stockhold` binary as a child process, with a
//! Redis and a Postgres database of each test's own, under 200 concurrent
//! clients, while Redis, the service or Postgres is killed or stopped. After
//! each fault, `harness::check` proves that no unit was sold twice, that
//! every acknowledged commit is in Postgres, that stock is conserved per
//! SKU, and that the service's own reconcile finds no drift.
//!
//! Needs the test Postgres (127.0.0.1:5434, or STOCKHOLD_TEST_DATABASE_URL)
//! that scripts/test.sh starts, `redis-server` on PATH, and the Postgres 15
//! server binaries (for the test that stops a Postgres of its own).

mod aof_faults;
mod cluster_faults;
mod combined_faults;
mod harness;
mod instance_faults;
mod postgres_faults;
mod redis_faults;
mod service_faults;
