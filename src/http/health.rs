//! `/healthz` and `/readyz`.

use super::schemas::{Problem, Status};
use crate::reconciler::Readiness;
use crate::service::Stock;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// Registers the health routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(super::resource("/readyz", "GET").route(web::get().to(readyz)))
        .service(super::resource("/metrics", "GET").route(web::get().to(metrics)));
}

/// Prometheus text; connection counts are sampled at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(stock: web::Data<Stock>) -> HttpResponse {
    use crate::metrics::POOL_CONNECTIONS;
    let (redis_open, redis_max) = stock.engine.connections();
    let pg = stock.ledger.pool();
    let pg_idle = pg.num_idle();
    let gauges = [
        // Redis connections are shared by all requests at once: open ones
        // are in use, the rest are not opened yet.
        ("redis", "in_use", redis_open),
        ("redis", "idle", redis_max - redis_open),
        (
            "postgres",
            "in_use",
            (pg.size() as usize).saturating_sub(pg_idle),
        ),
        ("postgres", "idle", pg_idle),
    ];
    for (pool, state, n) in gauges {
        metrics::gauge!(POOL_CONNECTIONS, "pool" => pool, "state" => state).set(n as f64);
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::handle().render())
}

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process runs", body = Status)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Ready", body = Status), (status = 503, description = "unavailable: not ready, with reasons", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn readyz(
    stock: web::Data<Stock>,
    readiness: web::Data<Readiness>,
) -> HttpResponse {
    let (redis, postgres) = tokio::join!(stock.engine.ping(), stock.ledger.ping());
    let mut reasons = Vec::new();
    if let Err(e) = redis {
        reasons.push(format!("redis: {e}"));
    }
    if let Err(e) = postgres {
        reasons.push(format!("postgres: {e}"));
    }
    if !readiness.is_ready() {
        reasons.push("start-up is not finished".to_owned());
    }
    if reasons.is_empty() {
        HttpResponse::Ok().json(json!({ "status": "ready" }))
    } else {
        super::error::problem(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Not ready",
            &reasons.join("; "),
            Some(("reasons", json!(reasons))),
        )
    }
}
