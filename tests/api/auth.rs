//! Authentication and roles: every `/v1` call needs a known key, SKU set-up
//! needs an admin key, and health checks need none.

use crate::helpers::*;
use crate::validation::{
    body, check_refusal, over_one_mib, raw, send, Expect, Failures, Payload, Snapshot,
};
use reqwest::Method;
use serde_json::{json, Value};

/// Sends a request with a literal `Authorization` header (or none).
async fn send_with_authorization(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    payload: &Payload,
) -> Result<reqwest::Response, String> {
    let headers: Vec<(&str, &[u8])> = authorization
        .map(|a| vec![("Authorization", a.as_bytes())])
        .unwrap_or_default();
    crate::validation::try_send(app, method, path, None, payload, &headers).await
}

/// An app with SKU A, a held reservation and a committed order.
async fn app_with_a_reservation_and_an_order() -> (TestApp, String, String) {
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let held = app.hold(&[("A", 2)]).await;
    let sold = app.hold(&[("A", 1)]).await;
    let res = app.commit(&sold, json!({ "order_id": "ord-1" })).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    (app, held, "ord-1".to_owned())
}

#[tokio::test]
async fn every_v1_endpoint_refuses_a_missing_or_unknown_key_with_401() {
    // Arrange
    let (app, id, order) = app_with_a_reservation_and_an_order().await;
    let sku = "/v1/skus/A".to_owned();
    let new_sku = "/v1/skus/NEW".to_owned();
    let reservation = format!("/v1/reservations/{id}");
    let commit = format!("{reservation}/commit");
    let order = format!("/v1/orders/{order}");
    let endpoints: Vec<(&str, Method, &str, Payload)> = vec![
        ("PUT sku", Method::PUT, &sku, body(json!({ "on_hand": 99 }))),
        (
            "PUT new sku",
            Method::PUT,
            &new_sku,
            body(json!({ "on_hand": 99 })),
        ),
        ("GET sku", Method::GET, &sku, Payload::Empty),
        (
            "GET availability",
            Method::GET,
            "/v1/availability?sku=A",
            Payload::Empty,
        ),
        (
            "POST reservation",
            Method::POST,
            "/v1/reservations",
            body(json!({ "lines": [ { "sku": "A", "qty": 1 } ] })),
        ),
        ("GET reservation", Method::GET, &reservation, Payload::Empty),
        (
            "PATCH reservation",
            Method::PATCH,
            &reservation,
            body(json!({ "lines": [ { "sku": "A", "qty": 5 } ] })),
        ),
        (
            "DELETE reservation",
            Method::DELETE,
            &reservation,
            Payload::Empty,
        ),
        ("commit reservation", Method::POST, &commit, body(json!({}))),
        ("GET order", Method::GET, &order, Payload::Empty),
        ("GET events", Method::GET, "/v1/events", Payload::Empty),
    ];
    let credentials: Vec<(&str, Option<&str>)> = vec![
        ("no Authorization", None),
        ("an unknown key", Some("Bearer not-a-known-key")),
        ("Basic credentials", Some("Basic xyz")),
        ("Basic with a valid key", Some("Basic dev-admin-key")),
        ("a known key without a scheme", Some("dev-admin-key")),
        ("an empty bearer token", Some("Bearer ")),
        ("a known key with a suffix", Some("Bearer dev-admin-key2")),
    ];
    let before = Snapshot::take(&app, &["A", "NEW"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (endpoint, method, path, payload) in &endpoints {
        for (credential, authorization) in &credentials {
            let res =
                send_with_authorization(&app, method.clone(), path, *authorization, payload).await;
            let outcome = match res {
                Ok(res) => check_refusal(res, Expect::Problem(401, "unauthorized")).await,
                Err(e) => Err(e),
            };
            let outcome = match outcome {
                Ok(_) => before.unchanged(&app).await,
                Err(e) => Err(e),
            };
            failures.record(&format!("{endpoint} with {credential}"), outcome);
        }
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_request_without_a_key_is_refused_before_its_body_is_looked_at() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let before = Snapshot::take(&app, &["A"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, payload) in [
        ("not JSON", raw("{")),
        ("an invalid reservation", body(json!({ "lines": [] }))),
        ("no body", Payload::Empty),
        ("a body over 1 MiB", over_one_mib()),
    ] {
        let res = send(&app, Method::POST, "/v1/reservations", None, &payload).await;
        let outcome = match res {
            Ok(res) => check_refusal(res, Expect::Problem(401, "unauthorized"))
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        failures.record(name, outcome);
    }
    failures.assert_none();
    before.unchanged(&app).await.unwrap();
}

#[tokio::test]
async fn sku_set_up_by_a_storefront_or_callcentre_key_is_forbidden_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let before = Snapshot::take(&app, &["A", "NEW"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (role, key) in [("storefront", STOREFRONT), ("callcentre", CALLCENTRE)] {
        for (what, sku) in [("create", "NEW"), ("update", "A")] {
            let payload = body(json!({ "on_hand": 99, "backorder_limit": 5 }));
            let res = send(
                &app,
                Method::PUT,
                &format!("/v1/skus/{sku}"),
                Some(key),
                &payload,
            )
            .await;
            let outcome = match res {
                Ok(res) => check_refusal(res, Expect::Problem(403, "forbidden")).await,
                Err(e) => Err(e),
            };
            let outcome = match outcome {
                Ok(_) => before.unchanged(&app).await,
                Err(e) => Err(e),
            };
            failures.record(&format!("{role} {what}"), outcome);
        }
    }
    failures.assert_none();
    assert_eq!(app.get_sku("NEW").await.status(), 404);
}

#[tokio::test]
async fn sku_set_up_by_a_non_admin_key_is_forbidden_whatever_its_body() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let before = Snapshot::take(&app, &["A"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, payload) in [
        ("not JSON", raw("on_hand=5")),
        ("no body", Payload::Empty),
        (
            "invalid fields",
            body(json!({ "on_hand": -1, "colour": "red" })),
        ),
        ("a body over 1 MiB", over_one_mib()),
    ] {
        let res = send(&app, Method::PUT, "/v1/skus/A", Some(STOREFRONT), &payload).await;
        let outcome = match res {
            Ok(res) => check_refusal(res, Expect::Problem(403, "forbidden")).await,
            Err(e) => Err(e),
        };
        let outcome = match outcome {
            Ok(_) => before.unchanged(&app).await,
            Err(e) => Err(e),
        };
        failures.record(name, outcome);
    }
    failures.assert_none();
}

#[tokio::test]
async fn sku_set_up_by_an_admin_key_creates_it_with_201() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let res = app.put_sku("NEW", json!({ "on_hand": 3 })).await;

    // Assert
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    assert_eq!(app.counts("NEW").await, (3, 0, 3));
}

#[tokio::test]
async fn every_role_may_read_availability_and_reserve_read_change_commit_and_release() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 100).await;

    for (role, key) in [
        ("storefront", STOREFRONT),
        ("callcentre", CALLCENTRE),
        ("admin", ADMIN),
    ] {
        let call = |method: Method, path: String, payload: Option<Value>| {
            let app = &app;
            async move { app.request(method, &path, Some(key), payload).await }
        };

        // Act / Assert
        let res = call(Method::GET, "/v1/availability?sku=A".into(), None).await;
        assert_eq!(res.status(), 200, "{role}: availability");
        let res = call(Method::GET, "/v1/skus/A".into(), None).await;
        assert_eq!(res.status(), 200, "{role}: SKU view");

        let lines = json!({ "lines": [ { "sku": "A", "qty": 1 } ] });
        let res = call(Method::POST, "/v1/reservations".into(), Some(lines.clone())).await;
        assert_eq!(
            res.status(),
            201,
            "{role}: reserve: {}",
            res.text().await.unwrap()
        );
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = call(Method::GET, format!("/v1/reservations/{id}"), None).await;
        assert_eq!(res.status(), 200, "{role}: read reservation");
        let change = json!({ "lines": [ { "sku": "A", "qty": 2 } ] });
        let res = call(
            Method::PATCH,
            format!("/v1/reservations/{id}"),
            Some(change),
        )
        .await;
        assert_eq!(
            res.status(),
            200,
            "{role}: change: {}",
            res.text().await.unwrap()
        );
        let order = json!({ "order_id": format!("ord-{role}") });
        let res = call(
            Method::POST,
            format!("/v1/reservations/{id}/commit"),
            Some(order),
        )
        .await;
        assert_eq!(
            res.status(),
            201,
            "{role}: commit: {}",
            res.text().await.unwrap()
        );
        let res = call(Method::GET, format!("/v1/orders/ord-{role}"), None).await;
        assert_eq!(res.status(), 200, "{role}: read order");

        let res = call(Method::POST, "/v1/reservations".into(), Some(lines)).await;
        assert_eq!(res.status(), 201, "{role}: reserve again");
        let id = res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let res = call(Method::DELETE, format!("/v1/reservations/{id}"), None).await;
        assert_eq!(res.status(), 200, "{role}: release");
    }
    // Three commits of 2 units each, nothing left held.
    assert_eq!(app.counts("A").await, (94, 0, 94));
}

#[tokio::test]
async fn callcentre_and_admin_keys_may_hold_longer_than_the_storefront_ceiling() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let hold = |ttl: i64| json!({ "lines": [ { "sku": "A", "qty": 1 } ], "ttl_seconds": ttl });

    // Act / Assert
    for (role, key, ttl, status) in [
        ("storefront", STOREFRONT, 3_600, 201),
        ("storefront", STOREFRONT, 3_601, 422),
        ("callcentre", CALLCENTRE, 86_400, 201),
        ("callcentre", CALLCENTRE, 86_401, 422),
        ("admin", ADMIN, 86_400, 201),
    ] {
        let res = app
            .request(Method::POST, "/v1/reservations", Some(key), Some(hold(ttl)))
            .await;
        assert_eq!(
            res.status(),
            status,
            "{role} with ttl {ttl}: {}",
            res.text().await.unwrap()
        );
    }
    assert_eq!(app.counts("A").await, (10, 3, 7));
}

#[tokio::test]
async fn health_checks_need_no_key() {
    // Arrange
    let app = spawn_app().await;

    // Act / Assert
    for path in ["/healthz", "/readyz"] {
        for authorization in [None, Some("Bearer not-a-known-key")] {
            let res =
                send_with_authorization(&app, Method::GET, path, authorization, &Payload::Empty)
                    .await
                    .unwrap();
            assert_eq!(res.status(), 200, "{path} with {authorization:?}");
        }
    }
}

/// Known paths with methods they do not take.
fn unsupported_methods(id: &str) -> Vec<(Method, String)> {
    vec![
        (Method::DELETE, "/v1/availability?sku=A".into()),
        (Method::POST, "/v1/availability".into()),
        (Method::GET, "/v1/reservations".into()),
        (Method::DELETE, "/v1/reservations".into()),
        (Method::PUT, format!("/v1/reservations/{id}")),
        (Method::POST, format!("/v1/reservations/{id}")),
        (Method::GET, format!("/v1/reservations/{id}/commit")),
        (Method::POST, "/v1/skus/A".into()),
        (Method::DELETE, "/v1/skus/A".into()),
        (Method::PATCH, "/v1/skus/A".into()),
        (Method::POST, "/v1/orders/ord-1".into()),
        (Method::DELETE, "/v1/orders/ord-1".into()),
        (Method::POST, "/healthz".into()),
    ]
}

#[tokio::test]
async fn an_unsupported_method_on_a_known_path_is_a_problem_json_405() {
    // Arrange
    let (app, id, _) = app_with_a_reservation_and_an_order().await;
    let before = Snapshot::take(&app, &["A"]).await;
    let mut failures = Failures::default();

    // Act / Assert
    for (method, path) in unsupported_methods(&id) {
        let res = send(&app, method.clone(), &path, Some(ADMIN), &Payload::Empty).await;
        let outcome = match res {
            Ok(res) => check_refusal(res, Expect::Problem(405, "method_not_allowed")).await,
            Err(e) => Err(e),
        };
        let outcome = match outcome {
            Ok(_) => before.unchanged(&app).await,
            Err(e) => Err(e),
        };
        failures.record(&format!("{method} {path}"), outcome);
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_405_names_the_allowed_methods_in_an_allow_header() {
    // Arrange: RFC 9110 §15.5.6 — a 405 MUST carry Allow.
    let (app, id, _) = app_with_a_reservation_and_an_order().await;
    let mut failures = Failures::default();

    // Act / Assert
    for (method, path) in unsupported_methods(&id) {
        let res = app.request(method.clone(), &path, Some(ADMIN), None).await;
        let allow = res
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let outcome = match allow {
            Some(allow) if !allow.trim().is_empty() => Ok(()),
            other => Err(format!(
                "status {}, Allow header {other:?}",
                res.status().as_u16()
            )),
        };
        failures.record(&format!("{method} {path}"), outcome);
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_401_carries_a_bearer_challenge_in_www_authenticate() {
    // Arrange: RFC 9110 §15.5.2 — a 401 MUST carry WWW-Authenticate.
    let app = spawn_app().await;
    let mut failures = Failures::default();

    // Act / Assert
    for (name, authorization) in [("no key", None), ("an unknown key", Some("Bearer nope"))] {
        let res = send_with_authorization(
            &app,
            Method::GET,
            "/v1/availability?sku=A",
            authorization,
            &Payload::Empty,
        )
        .await
        .unwrap();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let outcome = match challenge {
            Some(c) if c.to_ascii_lowercase().starts_with("bearer") => Ok(()),
            other => Err(format!(
                "status {}, WWW-Authenticate {other:?}",
                res.status().as_u16()
            )),
        };
        failures.record(name, outcome);
    }
    failures.assert_none();
}
