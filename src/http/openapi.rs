//! `/openapi.json`: the OpenAPI document, generated from the handlers'
//! annotations and the schemas of `views` and `schemas`.

use super::schemas::*;
use super::views::{
    AvailabilityItem, AvailabilityView, EventLineView, EventView, HoldOnSkuView, HoldsOnSkuView,
    LineView, MinuteCount, OrderLineView, OrderView, OverviewView, PoolJson, ReservationView,
    SkuJson,
};
use super::webhooks::{DeliveryView, WebhookView};
use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "stockhold",
        description = "Stock reservation service: atomic basket holds in Redis, durable sales in Postgres. \
            Every /v1 call takes `Authorization: Bearer <api-key>`; errors are application/problem+json \
            with a stable `code`. Every POST, PATCH and DELETE under /v1 accepts `Idempotency-Key` \
            (1–255 characters): a repeat with the same body from the same key within 24 h gets the first \
            response; a different body gets 409 idempotency_conflict. Bodies are at most 1 MiB (413).",
    ),
    paths(
        super::skus::put_sku,
        super::skus::get_sku,
        super::skus::list_skus,
        super::skus::availability,
        super::skus::adjust,
        super::skus::ledger,
        super::skus::holds,
        super::reservations::reserve,
        super::reservations::get_reservation,
        super::reservations::patch_reservation,
        super::reservations::release_reservation,
        super::reservations::commit_reservation,
        super::orders::get_order,
        super::orders::return_order,
        super::admin::reconcile,
        super::admin::overview,
        super::events::events,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::get,
        super::webhooks::delete,
        super::webhooks::resume,
        super::webhooks::deliveries,
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        openapi_json,
    ),
    components(schemas(
        ReserveBody, LineBody, PatchBody, PatchLineBody, CommitBody, PutSkuBody, AdjustmentBody,
        ReturnBody, ReconcileBody, Problem, FieldErrorDoc, ShortageDoc, LimitDoc, ReturnExcessDoc,
        LedgerPage, SkuPage, LedgerItem, ReconcileReport, DriftDoc, CountsDoc, Status, HoldStatusDoc, SkuId,
        ReservationView, LineView, OrderView, OrderLineView, SkuJson, PoolJson, AvailabilityView,
        AvailabilityItem, PoolShortDoc, EventView, EventLineView, WebhookBody, WebhookList,
        DeliveryPage, WebhookView, DeliveryView, OverviewView, MinuteCount, HoldsOnSkuView,
        HoldOnSkuView,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "skus", description = "SKU set-up, stock and availability"),
        (name = "reservations", description = "Holds: create, change, commit, release"),
        (name = "orders", description = "Orders and returns"),
        (name = "admin", description = "Ledger and reconciliation"),
        (name = "events", description = "What happens to stock, as Server-Sent Events"),
        (name = "webhooks", description = "Events delivered by HTTP POST, signed (Standard Webhooks)"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Registers `/openapi.json`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/openapi.json", "GET").route(web::get().to(openapi_json)));
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub(super) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_route_and_error_code() {
        let json = serde_json::to_string(&ApiDoc::openapi()).unwrap();
        for path in [
            "/v1/skus/{sku}",
            "/v1/skus/{sku}/adjustments",
            "/v1/skus/{sku}/ledger",
            "/v1/availability",
            "/v1/reservations",
            "/v1/reservations/{id}",
            "/v1/reservations/{id}/commit",
            "/v1/orders/{order_id}",
            "/v1/orders/{order_id}/returns",
            "/v1/admin/reconcile",
            "/v1/admin/overview",
            "/v1/skus/{sku}/holds",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(json.contains(&format!("\"{path}\"")), "{path} missing");
        }
        for code in [
            "validation_failed",
            "malformed_json",
            "unauthorized",
            "forbidden",
            "not_found",
            "unknown_sku",
            "insufficient_stock",
            "per_customer_limit_exceeded",
            "sale_not_started",
            "reservation_expired",
            "reservation_released",
            "reservation_committed",
            "return_exceeds_order",
            "idempotency_conflict",
            "payload_too_large",
            "unavailable",
        ] {
            assert!(json.contains(code), "{code} missing");
        }
    }
}
