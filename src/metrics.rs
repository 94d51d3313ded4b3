//! Prometheus metrics: one recorder per process, the names stockhold
//! records, and the `/metrics` rendering. Labels are bounded: routes are
//! path patterns (`/v1/reservations/{id}`), never ids or SKUs.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// HTTP requests, by route, method and status.
pub const HTTP_REQUESTS: &str = "stockhold_http_requests_total";
/// HTTP request latency in seconds, by route, method and status.
pub const HTTP_DURATION: &str = "stockhold_http_request_duration_seconds";
/// Reservations created.
pub const RESERVATIONS_CREATED: &str = "stockhold_reservations_created_total";
/// Reservations committed.
pub const RESERVATIONS_COMMITTED: &str = "stockhold_reservations_committed_total";
/// Reservations released.
pub const RESERVATIONS_RELEASED: &str = "stockhold_reservations_released_total";
/// Reservations expired by the reaper.
pub const RESERVATIONS_EXPIRED: &str = "stockhold_reservations_expired_total";
/// Reserve or change refused for lack of stock.
pub const INSUFFICIENT_STOCK: &str = "stockhold_insufficient_stock_rejections_total";
/// Commits answered 202: made in Redis, not yet in Postgres.
pub const COMMITS_NOT_PERSISTED: &str = "stockhold_commits_not_persisted_total";
/// Outbox entries after the watermark at the drain's last look.
pub const OUTBOX_LAG: &str = "stockhold_outbox_lag_entries";
/// Outbox entries persisted by the drain.
pub const OUTBOX_DRAINED: &str = "stockhold_outbox_drained_total";
/// SKUs found drifted by reconciliation.
pub const DRIFT_FOUND: &str = "stockhold_drift_found_total";
/// Outbox entries recorded per group-commit transaction.
pub const GROUP_COMMIT_SIZE: &str = "stockhold_group_commit_entries";
/// Connections of a pool, by pool (redis, postgres) and state (in_use, idle).
pub const POOL_CONNECTIONS: &str = "stockhold_pool_connections";

/// The process's recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(HTTP_DURATION.to_owned()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("valid buckets")
            .set_buckets_for_metric(
                Matcher::Full(GROUP_COMMIT_SIZE.to_owned()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
            )
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder (a test harness's) may be installed already;
        // stockhold's figures then go there, and /metrics shows what it has.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}
