//! Reservations (holds) over HTTP: create, read, change, commit, release,
//! and idempotent retries, checked against API.md and, for commits, against
//! the rows in Postgres.

use crate::helpers::*;
use chrono::{DateTime, Duration as TimeDelta, SecondsFormat, Utc};
use futures_util::future::join_all;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use std::time::Duration;

/// Long enough for a 1-second hold to have run out.
const PAST_A_ONE_SECOND_TTL: Duration = Duration::from_millis(1500);

/// `[{sku, qty}]` from `(sku, qty)` pairs.
fn lines(pairs: &[(&str, i64)]) -> Value {
    pairs
        .iter()
        .map(|(sku, qty)| json!({ "sku": sku, "qty": qty }))
        .collect()
}

/// `[{sku, requested, available}]` from triples.
fn shortages(triples: &[(&str, i64, i64)]) -> Value {
    triples
        .iter()
        .map(|(sku, requested, available)| {
            json!({ "sku": sku, "requested": requested, "available": available })
        })
        .collect()
}

/// The JSON body of `res`, asserting its status first.
use crate::helpers::body_of;

/// The members of a JSON object, sorted.
fn keys_of(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// A problem's list member sorted by its `sku`, so order does not matter.
fn sorted_by_sku(list: &Value) -> Value {
    let mut items = list.as_array().expect("a list").clone();
    items.sort_by(|a, b| a["sku"].as_str().cmp(&b["sku"].as_str()));
    Value::Array(items)
}

/// Parses an RFC 3339 UTC time as the API writes it (with a `Z`).
fn utc(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a time string: {v}"));
    assert!(s.ends_with('Z'), "{s} is not UTC with a Z");
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Creates a SKU with extra settings, asserting 201.
async fn create_sku_with(app: &TestApp, sku: &str, body: Value) {
    let res = app.put_sku(sku, body).await;
    body_of(res, 201).await;
}

/// Reserves with `body`, asserting 201; returns the reservation.
async fn reserve_ok(app: &TestApp, body: Value) -> Value {
    body_of(app.reserve(body).await, 201).await
}

/// Reserves with another API key.
async fn reserve_as(app: &TestApp, key: &str, body: Value) -> Response {
    app.request(Method::POST, "/v1/reservations", Some(key), Some(body))
        .await
}

/// Reserves with an `Idempotency-Key`.
async fn reserve_idempotently(
    app: &TestApp,
    api_key: &str,
    idempotency_key: &str,
    body: &Value,
) -> Response {
    app.client
        .post(format!("{}/v1/reservations", app.address))
        .bearer_auth(api_key)
        .header("Idempotency-Key", idempotency_key)
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// Holds `pairs` for a storefront customer; returns the reservation id.
async fn hold_for(app: &TestApp, customer: &str, pairs: &[(&str, i64)]) -> String {
    let body = reserve_ok(
        app,
        json!({ "lines": lines(pairs), "customer_id": customer }),
    )
    .await;
    body["id"].as_str().unwrap().to_owned()
}

/// Holds `pairs` with a 1-second TTL and waits until it has run out.
async fn expired_hold(app: &TestApp, pairs: &[(&str, i64)]) -> String {
    let body = reserve_ok(app, json!({ "lines": lines(pairs), "ttl_seconds": 1 })).await;
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    body["id"].as_str().unwrap().to_owned()
}

async fn commit_ok(app: &TestApp, id: &str, body: Value) -> Value {
    body_of(app.commit(id, body).await, 201).await
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let body = body_of(app.get_reservation(id).await, 200).await;
    body["status"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------- reserve

#[tokio::test]
async fn reserve_returns_201_with_the_reservation_exactly_as_api_md_shows_it() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;

    // Act
    let res = app
        .reserve(json!({
            "lines": lines(&[("B", 1), ("A", 2), ("B", 3)]),
            "customer_id": "c-123", "channel": "web"
        }))
        .await;

    // Assert
    let body = body_of(res, 201).await;
    assert_eq!(
        keys_of(&body),
        [
            "channel",
            "created_at",
            "customer_id",
            "expires_at",
            "id",
            "lines",
            "status"
        ],
        "{body}"
    );
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("res_") && id.len() > 4, "{id}");
    assert_eq!(body["status"], "held");
    assert_eq!(body["customer_id"], "c-123");
    assert_eq!(body["channel"], "web");
    assert_eq!(
        body["lines"],
        lines(&[("B", 4), ("A", 2)]),
        "summed, first-named order"
    );
    let ttl = utc(&body["expires_at"]) - utc(&body["created_at"]);
    assert_eq!(ttl, TimeDelta::seconds(900), "default ttl is 900 s");
    assert_eq!(app.counts("A").await, (10, 2, 8));
    assert_eq!(app.counts("B").await, (5, 4, 1));
}

#[tokio::test]
async fn reserve_sets_expires_at_ttl_seconds_after_created_at() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;

    // Act
    let body = reserve_ok(
        &app,
        json!({ "lines": lines(&[("A", 1)]), "ttl_seconds": 60 }),
    )
    .await;

    // Assert
    let ttl = utc(&body["expires_at"]) - utc(&body["created_at"]);
    assert_eq!(ttl, TimeDelta::seconds(60));
}

#[tokio::test]
async fn reserve_of_a_60_line_basket_with_one_short_line_holds_nothing_and_names_that_line() {
    // Arrange
    let app = spawn_app().await;
    let skus: Vec<String> = (0..60).map(|i| format!("S{i:02}")).collect();
    join_all(skus.iter().map(|sku| {
        let on_hand = if sku == "S37" { 1 } else { 10 };
        app.create_sku(sku, on_hand)
    }))
    .await;
    let basket: Vec<(&str, i64)> = skus.iter().map(|s| (s.as_str(), 2)).collect();

    // Act
    let res = app.reserve(json!({ "lines": lines(&basket) })).await;

    // Assert
    let problem = assert_problem(res, 409, "insufficient_stock").await;
    assert_eq!(problem["shortages"], shortages(&[("S37", 2, 1)]));
    let counts = join_all(skus.iter().map(|s| app.counts(s))).await;
    for (sku, (_, held, _)) in skus.iter().zip(counts) {
        assert_eq!(held, 0, "{sku} must hold nothing");
    }
}

#[tokio::test]
async fn reserve_returns_409_listing_every_short_line() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 1).await;
    app.create_sku("B", 5).await;
    app.create_sku("C", 0).await;

    // Act
    let res = app
        .reserve(json!({ "lines": lines(&[("A", 2), ("B", 1), ("C", 3)]) }))
        .await;

    // Assert
    let problem = assert_problem(res, 409, "insufficient_stock").await;
    assert_eq!(
        sorted_by_sku(&problem["shortages"]),
        shortages(&[("A", 2, 1), ("C", 3, 0)])
    );
    for sku in ["A", "B", "C"] {
        assert_eq!(app.counts(sku).await.1, 0, "{sku} must hold nothing");
    }
}

#[tokio::test]
async fn reserve_with_allow_partial_holds_what_is_available_and_lists_the_shortages() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 3).await;
    app.create_sku("C", 0).await;

    // Act
    let res = app
        .reserve(json!({
            "lines": lines(&[("A", 2), ("B", 5), ("C", 1)]),
            "allow_partial": true
        }))
        .await;

    // Assert
    let body = body_of(res, 201).await;
    assert_eq!(body["status"], "held");
    assert_eq!(body["lines"], lines(&[("A", 2), ("B", 3)]), "C is dropped");
    assert_eq!(
        sorted_by_sku(&body["shortages"]),
        shortages(&[("B", 5, 3), ("C", 1, 0)])
    );
    assert_eq!(app.counts("A").await, (10, 2, 8));
    assert_eq!(app.counts("B").await, (3, 3, 0));
    assert_eq!(app.counts("C").await, (0, 0, 0));
}

#[tokio::test]
async fn reserve_with_allow_partial_returns_409_when_nothing_at_all_can_be_held() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 0).await;
    app.create_sku("B", 1).await;
    app.hold(&[("B", 1)]).await;

    // Act
    let res = app
        .reserve(json!({ "lines": lines(&[("A", 2), ("B", 1)]), "allow_partial": true }))
        .await;

    // Assert
    let problem = assert_problem(res, 409, "insufficient_stock").await;
    assert_eq!(
        sorted_by_sku(&problem["shortages"]),
        shortages(&[("A", 2, 0), ("B", 1, 0)])
    );
    assert_eq!(app.counts("A").await, (0, 0, 0));
    assert_eq!(app.counts("B").await, (1, 1, 0));
}

#[tokio::test]
async fn the_second_customer_is_refused_the_last_unit_at_reserve_time() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 1).await;
    let first = json!({ "lines": lines(&[("A", 1)]), "customer_id": "c-1" });
    let second = json!({ "lines": lines(&[("A", 1)]), "customer_id": "c-2" });

    // Act
    let first = app.reserve(first).await;
    let second = app.reserve(second).await;

    // Assert
    assert_eq!(first.status(), StatusCode::CREATED);
    let problem = assert_problem(second, 409, "insufficient_stock").await;
    assert_eq!(problem["shortages"], shortages(&[("A", 1, 0)]));
    assert_eq!(app.counts("A").await, (1, 1, 0));
}

#[tokio::test]
async fn reserve_returns_422_unknown_sku_listing_every_unknown_sku_and_holds_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;

    // Act
    let res = app
        .reserve(json!({ "lines": lines(&[("A", 1), ("X1", 1), ("X2", 2)]) }))
        .await;

    // Assert
    let problem = assert_problem(res, 422, "unknown_sku").await;
    let mut unknown: Vec<&str> = problem["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    unknown.sort_unstable();
    assert_eq!(unknown, ["X1", "X2"]);
    assert_eq!(app.counts("A").await, (5, 0, 5));
}

// ------------------------------------------------------ per-customer limit

#[tokio::test]
async fn a_sku_with_a_per_customer_limit_cannot_be_held_without_a_customer_id() {
    // Arrange
    let app = spawn_app().await;
    create_sku_with(&app, "A", json!({ "on_hand": 10, "per_customer_limit": 2 })).await;

    // Act
    let res = app.reserve(json!({ "lines": lines(&[("A", 1)]) })).await;

    // Assert
    let problem = assert_problem(res, 422, "validation_failed").await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"customer_id"), "{problem}");
    assert_eq!(app.counts("A").await, (10, 0, 10));
}

#[tokio::test]
async fn per_customer_limit_counts_what_the_customer_holds_and_has_bought() {
    // Arrange
    let app = spawn_app().await;
    create_sku_with(&app, "A", json!({ "on_hand": 10, "per_customer_limit": 2 })).await;
    let bought = hold_for(&app, "c-1", &[("A", 1)]).await;
    commit_ok(&app, &bought, json!({})).await;

    // Act
    let over = app
        .reserve(json!({ "lines": lines(&[("A", 2)]), "customer_id": "c-1" }))
        .await;
    let other_customer = app
        .reserve(json!({ "lines": lines(&[("A", 2)]), "customer_id": "c-2" }))
        .await;

    // Assert
    let problem = assert_problem(over, 409, "per_customer_limit_exceeded").await;
    assert_eq!(
        problem["limits"],
        json!([{ "sku": "A", "limit": 2, "already": 1, "requested": 2 }])
    );
    assert_eq!(other_customer.status(), StatusCode::CREATED);
    assert_eq!(app.counts("A").await, (9, 2, 7));
}

#[tokio::test]
async fn releasing_a_hold_gives_the_per_customer_allowance_back() {
    // Arrange
    let app = spawn_app().await;
    create_sku_with(&app, "A", json!({ "on_hand": 10, "per_customer_limit": 2 })).await;
    let first = hold_for(&app, "c-1", &[("A", 2)]).await;
    let again = json!({ "lines": lines(&[("A", 2)]), "customer_id": "c-1" });
    let refused = app.reserve(again.clone()).await;
    assert_problem(refused, 409, "per_customer_limit_exceeded").await;

    // Act
    body_of(app.release(&first).await, 200).await;
    let res = app.reserve(again).await;

    // Assert
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(app.counts("A").await, (10, 2, 8));
}

// --------------------------------------------------- sale start, backorder

#[tokio::test]
async fn a_sku_whose_sale_has_not_started_cannot_be_held_until_it_has() {
    // Arrange
    let app = spawn_app().await;
    let starts_at = Utc::now() + TimeDelta::days(1);
    let starts_at = DateTime::parse_from_rfc3339(&rfc3339(starts_at))
        .unwrap()
        .with_timezone(&Utc);
    create_sku_with(
        &app,
        "A",
        json!({ "on_hand": 10, "sale_starts_at": rfc3339(starts_at) }),
    )
    .await;
    let body = json!({ "lines": lines(&[("A", 1)]) });

    // Act
    let early = app.reserve(body.clone()).await;
    let started = rfc3339(Utc::now() - TimeDelta::hours(1));
    body_of(
        app.put_sku("A", json!({ "sale_starts_at": started })).await,
        200,
    )
    .await;
    let later = app.reserve(body).await;

    // Assert
    let problem = assert_problem(early, 409, "sale_not_started").await;
    let skus = problem["skus"].as_array().unwrap();
    assert_eq!(skus.len(), 1, "{problem}");
    assert_eq!(skus[0]["sku"], "A");
    assert_eq!(utc(&skus[0]["starts_at"]), starts_at);
    assert_eq!(later.status(), StatusCode::CREATED);
    assert_eq!(app.counts("A").await, (10, 1, 9));
}

#[tokio::test]
async fn backorder_limit_lets_holds_go_beyond_on_hand_up_to_the_limit() {
    // Arrange
    let app = spawn_app().await;
    create_sku_with(&app, "A", json!({ "on_hand": 0, "backorder_limit": 5 })).await;

    // Act
    let six = app.reserve(json!({ "lines": lines(&[("A", 6)]) })).await;
    let five = app.reserve(json!({ "lines": lines(&[("A", 5)]) })).await;

    // Assert
    let problem = assert_problem(six, 409, "insufficient_stock").await;
    assert_eq!(problem["shortages"], shortages(&[("A", 6, 5)]));
    assert_eq!(five.status(), StatusCode::CREATED);
    assert_eq!(app.counts("A").await, (0, 5, 0));
}

// ------------------------------------------------------------ TTL ceilings

#[tokio::test]
async fn ttl_seconds_is_checked_against_the_ceiling_of_the_callers_role() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 100).await;
    let cases = [
        (STOREFRONT, 3_600, 201),
        (STOREFRONT, 3_601, 422),
        (STOREFRONT, 0, 422),
        (CALLCENTRE, 86_400, 201),
        (CALLCENTRE, 86_401, 422),
    ];

    for (key, ttl, expected) in cases {
        // Act
        let body = json!({ "lines": lines(&[("A", 1)]), "ttl_seconds": ttl });
        let res = reserve_as(&app, key, body).await;

        // Assert
        let case = format!("{key} ttl_seconds {ttl}");
        if expected == 201 {
            let body = body_of(res, 201).await;
            let got = utc(&body["expires_at"]) - utc(&body["created_at"]);
            assert_eq!(got, TimeDelta::seconds(ttl), "{case}");
        } else {
            let problem = assert_problem(res, 422, "validation_failed").await;
            assert_eq!(problem["errors"][0]["field"], "ttl_seconds", "{case}");
        }
    }
    assert_eq!(app.counts("A").await.1, 2, "only the accepted holds hold");
}

// ------------------------------------------------------------------- GET

#[tokio::test]
async fn get_reservation_returns_200_with_the_reservation_and_its_status() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let created = reserve_ok(
        &app,
        json!({ "lines": lines(&[("A", 2)]), "customer_id": "c-1", "channel": "web" }),
    )
    .await;
    let id = created["id"].as_str().unwrap();

    // Act
    let held = body_of(app.get_reservation(id).await, 200).await;
    body_of(app.release(id).await, 200).await;
    let released = body_of(app.get_reservation(id).await, 200).await;

    // Assert
    assert_eq!(held, created);
    assert_eq!(released["status"], "released");
    assert_eq!(released["lines"], created["lines"]);
}

#[tokio::test]
async fn get_reservation_of_an_unknown_id_returns_404_not_found() {
    // Arrange
    let app = spawn_app().await;
    let well_formed = format!("res_{}", uuid::Uuid::new_v4().simple());
    let ids = [
        well_formed.as_str(),
        "res_123",
        "res_0123456789ABCDEF0123456789ABCDEF",
        "ord_0123456789abcdef0123456789abcdef",
        "nonsense",
    ];

    for id in ids {
        // Act
        let res = app.get_reservation(id).await;

        // Assert
        let problem = assert_problem(res, 404, "not_found").await;
        assert_eq!(problem["status"], 404, "{id}");
    }
}

// ----------------------------------------------------------------- PATCH

#[tokio::test]
async fn patch_sets_named_lines_removes_zero_lines_and_keeps_unnamed_ones() {
    // Arrange
    let app = spawn_app().await;
    for sku in ["A", "B", "C", "D"] {
        app.create_sku(sku, 10).await;
    }
    let id = app.hold(&[("A", 2), ("B", 1), ("C", 1)]).await;

    // Act
    let res = app
        .patch_reservation(
            &id,
            json!({ "lines": lines(&[("C", 3), ("A", 0), ("D", 2)]) }),
        )
        .await;

    // Assert
    let body = body_of(res, 200).await;
    assert_eq!(body["status"], "held");
    assert_eq!(
        sorted_by_sku(&body["lines"]),
        lines(&[("B", 1), ("C", 3), ("D", 2)])
    );
    assert_eq!(body_of(app.get_reservation(&id).await, 200).await, body);
    assert_eq!(app.counts("A").await, (10, 0, 10));
    assert_eq!(app.counts("B").await, (10, 1, 9));
    assert_eq!(app.counts("C").await, (10, 3, 7));
    assert_eq!(app.counts("D").await, (10, 2, 8));
}

#[tokio::test]
async fn patch_raising_a_line_needs_only_the_extra_units() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 3).await;
    let id = app.hold(&[("A", 2)]).await;

    // Act
    let to_three = app
        .patch_reservation(&id, json!({ "lines": lines(&[("A", 3)]) }))
        .await;
    let to_four = app
        .patch_reservation(&id, json!({ "lines": lines(&[("A", 4)]) }))
        .await;

    // Assert
    let body = body_of(to_three, 200).await;
    assert_eq!(body["lines"], lines(&[("A", 3)]));
    let problem = assert_problem(to_four, 409, "insufficient_stock").await;
    assert_eq!(problem["shortages"], shortages(&[("A", 4, 3)]));
    assert_eq!(app.counts("A").await, (3, 3, 0));
    let now = body_of(app.get_reservation(&id).await, 200).await;
    assert_eq!(now["lines"], lines(&[("A", 3)]));
}

#[tokio::test]
async fn patch_is_all_or_nothing_across_lines() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 1).await;
    app.create_sku("C", 10).await;
    let id = app.hold(&[("A", 1), ("B", 1)]).await;
    let before = body_of(app.get_reservation(&id).await, 200).await;

    // Act
    let res = app
        .patch_reservation(
            &id,
            json!({ "lines": lines(&[("A", 5), ("B", 2), ("C", 3)]) }),
        )
        .await;

    // Assert
    let problem = assert_problem(res, 409, "insufficient_stock").await;
    assert_eq!(problem["shortages"], shortages(&[("B", 2, 1)]));
    assert_eq!(body_of(app.get_reservation(&id).await, 200).await, before);
    assert_eq!(app.counts("A").await, (10, 1, 9));
    assert_eq!(app.counts("B").await, (1, 1, 0));
    assert_eq!(app.counts("C").await, (10, 0, 10));
}

#[tokio::test]
async fn patch_with_ttl_seconds_restarts_the_expiry_from_now() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let created = reserve_ok(
        &app,
        json!({ "lines": lines(&[("A", 1)]), "ttl_seconds": 60 }),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let asked_at = Utc::now();

    // Act
    let res = app
        .patch_reservation(id, json!({ "ttl_seconds": 600 }))
        .await;

    // Assert
    let body = body_of(res, 200).await;
    let expires_at = utc(&body["expires_at"]);
    assert!(
        expires_at > utc(&created["expires_at"]) + TimeDelta::seconds(500),
        "expires_at did not move: {created} -> {body}"
    );
    let from_now = expires_at - asked_at;
    assert!(
        (TimeDelta::seconds(595)..=TimeDelta::seconds(605)).contains(&from_now),
        "expires_at should be about 600 s from now, is {from_now}"
    );
    assert_eq!(body["created_at"], created["created_at"]);
    assert_eq!(body["lines"], created["lines"]);
    let read = body_of(app.get_reservation(id).await, 200).await;
    assert_eq!(read["expires_at"], body["expires_at"]);
}

#[tokio::test]
async fn patch_of_a_released_reservation_returns_409_reservation_released() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 1)]).await;
    body_of(app.release(&id).await, 200).await;

    // Act
    let res = app
        .patch_reservation(&id, json!({ "lines": lines(&[("A", 2)]) }))
        .await;

    // Assert
    assert_problem(res, 409, "reservation_released").await;
    assert_eq!(app.counts("A").await, (5, 0, 5));
}

#[tokio::test]
async fn patch_of_a_committed_reservation_returns_409_reservation_committed() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 1)]).await;
    commit_ok(&app, &id, json!({})).await;

    // Act
    let res = app
        .patch_reservation(&id, json!({ "lines": lines(&[("A", 2)]) }))
        .await;

    // Assert
    assert_problem(res, 409, "reservation_committed").await;
    assert_eq!(app.counts("A").await, (4, 0, 4));
}

#[tokio::test]
async fn patch_of_an_expired_reservation_returns_410_reservation_expired() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = expired_hold(&app, &[("A", 1)]).await;

    // Act
    let res = app
        .patch_reservation(&id, json!({ "lines": lines(&[("A", 2)]) }))
        .await;

    // Assert
    assert_problem(res, 410, "reservation_expired").await;
    assert_eq!(app.counts("A").await, (5, 0, 5));
    assert_eq!(status_of(&app, &id).await, "expired");
}

#[tokio::test]
async fn a_basket_grown_line_by_line_with_patch_commits_whole() {
    // Arrange
    let app = spawn_app().await;
    let skus: Vec<String> = (0..40).map(|i| format!("G{i:02}")).collect();
    join_all(skus.iter().map(|sku| app.create_sku(sku, 5))).await;
    let qty = |i: usize| (i % 3 + 1) as i64;
    let id = app.hold(&[(skus[0].as_str(), qty(0))]).await;
    for (i, sku) in skus.iter().enumerate().skip(1) {
        let res = app
            .patch_reservation(&id, json!({ "lines": lines(&[(sku.as_str(), qty(i))]) }))
            .await;
        body_of(res, 200).await;
    }

    // Act
    let order = commit_ok(&app, &id, json!({})).await;

    // Assert
    let expected: Vec<Value> = skus
        .iter()
        .enumerate()
        .map(|(i, sku)| json!({ "sku": sku, "qty": qty(i), "returned_qty": 0 }))
        .collect();
    assert_eq!(order["lines"], Value::Array(expected));
    for (i, sku) in skus.iter().enumerate() {
        let left = 5 - qty(i);
        assert_eq!(app.counts(sku).await, (left, 0, left), "{sku}");
    }
    let (persisted_lines,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM order_lines WHERE order_id = $1")
            .bind(order["order_id"].as_str().unwrap())
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(persisted_lines, 40);
}

// ---------------------------------------------------------------- commit

#[tokio::test]
async fn commit_returns_201_with_the_order_and_sells_the_held_units() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    let id = reserve_ok(
        &app,
        json!({
            "lines": lines(&[("A", 2), ("B", 1)]),
            "customer_id": "c-123", "channel": "web"
        }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = Utc::now() - TimeDelta::seconds(5);

    // Act
    let res = app
        .commit(
            &id,
            json!({ "order_id": "ord-5521", "payment_ref": "psp-77" }),
        )
        .await;

    // Assert
    let order = body_of(res, 201).await;
    assert_eq!(order["order_id"], "ord-5521");
    assert_eq!(order["reservation_id"], id.as_str());
    assert_eq!(order["customer_id"], "c-123");
    assert_eq!(order["channel"], "web");
    assert_eq!(
        order["lines"],
        json!([
            { "sku": "A", "qty": 2, "returned_qty": 0 },
            { "sku": "B", "qty": 1, "returned_qty": 0 }
        ])
    );
    let committed_at = utc(&order["committed_at"]);
    assert!(committed_at > before && committed_at < Utc::now() + TimeDelta::seconds(5));
    assert!(
        order.get("persisted").is_none(),
        "a 201 is persisted: {order}"
    );
    assert_eq!(app.counts("A").await, (8, 0, 8));
    assert_eq!(app.counts("B").await, (4, 0, 4));
    assert_eq!(status_of(&app, &id).await, "committed");
}

#[tokio::test]
async fn a_committed_order_is_in_postgres_when_the_201_is_sent() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    let id = hold_for(&app, "c-123", &[("A", 2), ("B", 1)]).await;

    // Act
    let order = commit_ok(&app, &id, json!({ "order_id": "ord-1" })).await;

    // Assert
    assert_eq!(order["order_id"], "ord-1");
    let row: (String, String, Option<String>, DateTime<Utc>) = sqlx::query_as(
        "SELECT order_id, reservation_id, customer_id, committed_at FROM orders WHERE order_id = $1",
    )
    .bind("ord-1")
    .fetch_one(app.db())
    .await
    .expect("the order row is in Postgres");
    assert_eq!(
        (row.0.as_str(), row.1.as_str(), row.2.as_deref()),
        ("ord-1", id.as_str(), Some("c-123"))
    );
    assert_eq!(row.3, utc(&order["committed_at"]));
    let order_lines: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT sku, qty, returned_qty FROM order_lines WHERE order_id = $1 ORDER BY line_no",
    )
    .bind("ord-1")
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(
        order_lines,
        [("A".to_owned(), 2, 0), ("B".to_owned(), 1, 0)]
    );
    let movements: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT sku, delta, on_hand_after FROM stock_movements
         WHERE kind = 'commit' AND ref = $1 ORDER BY sku",
    )
    .bind("ord-1")
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(
        movements,
        [("A".to_owned(), -2, 8), ("B".to_owned(), -1, 4)]
    );
}

#[tokio::test]
async fn committing_again_returns_200_with_the_same_order_and_sells_nothing_more() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let id = app.hold(&[("A", 2)]).await;
    let first = commit_ok(&app, &id, json!({ "order_id": "ord-7" })).await;

    // Act
    let again = app.commit(&id, json!({ "order_id": "ord-7" })).await;

    // Assert
    assert_eq!(body_of(again, 200).await, first);
    assert_eq!(app.counts("A").await, (8, 0, 8));
    let (commits,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM stock_movements WHERE kind = 'commit'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(commits, 1);
}

#[tokio::test]
async fn commit_of_a_released_reservation_returns_409_reservation_released() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 2)]).await;
    body_of(app.release(&id).await, 200).await;

    // Act
    let res = app.commit(&id, json!({})).await;

    // Assert
    assert_problem(res, 409, "reservation_released").await;
    assert_eq!(app.counts("A").await, (5, 0, 5));
}

#[tokio::test]
async fn commit_of_an_expired_reservation_returns_410_reservation_expired() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = expired_hold(&app, &[("A", 2)]).await;

    // Act
    let res = app.commit(&id, json!({})).await;

    // Assert
    assert_problem(res, 410, "reservation_expired").await;
    assert_eq!(app.counts("A").await, (5, 0, 5));
    assert_eq!(status_of(&app, &id).await, "expired");
}

#[tokio::test]
async fn commit_of_a_reservation_with_no_lines_left_returns_422_validation_failed() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 2)]).await;
    let emptied = app
        .patch_reservation(&id, json!({ "lines": lines(&[("A", 0)]) }))
        .await;
    assert_eq!(body_of(emptied, 200).await["lines"], json!([]));

    // Act
    let res = app.commit(&id, json!({})).await;

    // Assert
    assert_problem(res, 422, "validation_failed").await;
    assert_eq!(app.counts("A").await, (5, 0, 5));
    assert_eq!(status_of(&app, &id).await, "held");
}

#[tokio::test]
async fn commit_with_an_order_id_used_by_another_reservation_returns_422_on_order_id() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let first = app.hold(&[("A", 1)]).await;
    let second = app.hold(&[("A", 2)]).await;
    commit_ok(&app, &first, json!({ "order_id": "ord-dup" })).await;

    // Act
    let res = app.commit(&second, json!({ "order_id": "ord-dup" })).await;

    // Assert
    let problem = assert_problem(res, 422, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "order_id", "{problem}");
    assert_eq!(status_of(&app, &second).await, "held");
    assert_eq!(app.counts("A").await, (9, 2, 7));
    let order = body_of(app.get_order("ord-dup").await, 200).await;
    assert_eq!(order["reservation_id"], first.as_str());
}

#[tokio::test]
async fn commit_without_a_body_generates_an_order_id() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 1)]).await;

    // Act
    let res = app
        .request(
            Method::POST,
            &format!("/v1/reservations/{id}/commit"),
            Some(STOREFRONT),
            None,
        )
        .await;

    // Assert
    let order = body_of(res, 201).await;
    let order_id = order["order_id"].as_str().expect("an order id");
    assert!(!order_id.is_empty());
    assert_eq!(order["reservation_id"], id.as_str());
    assert_eq!(app.counts("A").await, (4, 0, 4));
    assert_eq!(body_of(app.get_order(order_id).await, 200).await, order);
}

// ---------------------------------------------------------------- DELETE

#[tokio::test]
async fn release_returns_200_released_and_gives_the_units_back() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 3)]).await;
    assert_eq!(app.counts("A").await, (5, 3, 2));

    // Act
    let res = app.release(&id).await;

    // Assert
    let body = body_of(res, 200).await;
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["status"], "released");
    assert_eq!(app.counts("A").await, (5, 0, 5));
}

#[tokio::test]
async fn releasing_again_returns_200_released_and_gives_nothing_back_twice() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 2)]).await;
    app.hold(&[("A", 1)]).await;
    body_of(app.release(&id).await, 200).await;

    // Act
    let res = app.release(&id).await;

    // Assert
    let body = body_of(res, 200).await;
    assert_eq!(body["status"], "released");
    assert_eq!(app.counts("A").await, (5, 1, 4));
}

#[tokio::test]
async fn release_of_a_committed_reservation_returns_409_reservation_committed() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = app.hold(&[("A", 2)]).await;
    commit_ok(&app, &id, json!({})).await;

    // Act
    let res = app.release(&id).await;

    // Assert
    assert_problem(res, 409, "reservation_committed").await;
    assert_eq!(app.counts("A").await, (3, 0, 3));
    assert_eq!(status_of(&app, &id).await, "committed");
}

#[tokio::test]
async fn release_of_an_expired_reservation_returns_200_with_status_expired() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let id = expired_hold(&app, &[("A", 2)]).await;

    // Act
    let res = app.release(&id).await;

    // Assert
    let body = body_of(res, 200).await;
    assert_eq!(body["status"], "expired");
    assert_eq!(app.counts("A").await, (5, 0, 5));
}

// ------------------------------------------------------- Idempotency-Key

#[tokio::test]
async fn a_repeated_reserve_with_the_same_idempotency_key_answers_the_same_and_holds_once() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let body = json!({ "lines": lines(&[("A", 2)]), "customer_id": "c-1" });
    let first = reserve_idempotently(&app, STOREFRONT, "basket-1", &body).await;
    let (first_status, first_body) = (first.status(), first.text().await.unwrap());

    // Act
    let again = reserve_idempotently(&app, STOREFRONT, "basket-1", &body).await;

    // Assert
    assert_eq!(first_status, StatusCode::CREATED, "{first_body}");
    assert_eq!(again.status(), first_status);
    assert_eq!(again.text().await.unwrap(), first_body);
    assert_eq!(app.counts("A").await, (10, 2, 8));
}

#[tokio::test]
async fn the_same_idempotency_key_with_a_different_body_returns_409_idempotency_conflict() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let first = json!({ "lines": lines(&[("A", 2)]) });
    let different = json!({ "lines": lines(&[("A", 3)]) });
    let res = reserve_idempotently(&app, STOREFRONT, "basket-1", &first).await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // Act
    let res = reserve_idempotently(&app, STOREFRONT, "basket-1", &different).await;

    // Assert
    assert_problem(res, 409, "idempotency_conflict").await;
    assert_eq!(app.counts("A").await, (10, 2, 8));
}

#[tokio::test]
async fn the_same_idempotency_key_from_another_api_key_is_a_separate_request() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let body = json!({ "lines": lines(&[("A", 2)]) });
    let storefront = reserve_idempotently(&app, STOREFRONT, "basket-1", &body).await;
    let storefront = body_of(storefront, 201).await;

    // Act
    let callcentre = reserve_idempotently(&app, CALLCENTRE, "basket-1", &body).await;

    // Assert
    let callcentre = body_of(callcentre, 201).await;
    assert_ne!(callcentre["id"], storefront["id"]);
    assert_eq!(app.counts("A").await, (10, 4, 6));
}

#[tokio::test]
async fn an_idempotency_key_longer_than_255_characters_returns_422() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let body = json!({ "lines": lines(&[("A", 1)]) });

    // Act
    let too_long = reserve_idempotently(&app, STOREFRONT, &"k".repeat(256), &body).await;
    let longest = reserve_idempotently(&app, STOREFRONT, &"k".repeat(255), &body).await;

    // Assert
    assert_problem(too_long, 422, "validation_failed").await;
    assert_eq!(longest.status(), StatusCode::CREATED);
    assert_eq!(app.counts("A").await, (10, 1, 9));
}
