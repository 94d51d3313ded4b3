//! A SKU's ledger (`GET /v1/skus/{sku}/ledger`): its append-only history,
//! newest first, in pages; and the table behind it, which refuses updates
//! and deletes.

use crate::helpers::*;
use crate::validation::{check_refusal, Expect, Failures};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;

/// The JSON body of `res`, asserting its status first.
use crate::helpers::body_of;

/// One page of the ledger, asserting 200.
async fn page(app: &TestApp, sku: &str, query: &str) -> Value {
    body_of(app.ledger(sku, query).await, 200).await
}

/// The members of a JSON object, sorted.
fn keys_of(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
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

/// Adjusts `sku` by `delta`, asserting 201.
async fn adjust_ok(app: &TestApp, sku: &str, adjustment_id: &str, delta: i64) {
    let res = app
        .adjust(
            sku,
            json!({ "adjustment_id": adjustment_id, "delta": delta, "reason": "count" }),
        )
        .await;
    body_of(res, 201).await;
}

/// The ids of a page's items.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().expect("ids are strings").to_owned())
        .collect()
}

#[tokio::test]
async fn the_ledger_lists_every_change_of_on_hand_newest_first() {
    // Arrange
    let app = spawn_app().await;
    let started = Utc::now() - chrono::Duration::seconds(5);
    app.create_sku("A", 10).await;
    body_of(app.put_sku("A", json!({ "on_hand": 15 })).await, 200).await;
    app.commit_order("ord-1", &[("A", 3)]).await;
    adjust_ok(&app, "A", "adj-1", -2).await;

    // Act
    let body = page(&app, "A", "").await;

    // Assert
    assert_eq!(keys_of(&body), ["items", "next"], "{body}");
    assert_eq!(body["next"], Value::Null, "{body}");
    let items = body["items"].as_array().unwrap();
    let summary: Vec<(&str, i64, i64)> = items
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap(),
                i["delta"].as_i64().unwrap(),
                i["on_hand_after"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("adjustment", -2, 10),
            ("commit", -3, 12),
            ("adjustment", 5, 15),
            ("created", 10, 10),
        ],
        "{body}"
    );
    assert_eq!(items[0]["ref"], "adj-1", "an adjustment names its id");
    assert_eq!(items[1]["ref"], "ord-1", "a commit names its order");
    let mut previous: Option<DateTime<Utc>> = None;
    let mut seen = HashSet::new();
    for item in items {
        assert_eq!(
            keys_of(item),
            ["at", "delta", "id", "kind", "on_hand_after", "ref"],
            "{item}"
        );
        let id = item["id"].as_str().expect("the id is a string");
        assert!(!id.is_empty() && seen.insert(id.to_owned()), "{body}");
        assert!(
            item["ref"].as_str().is_some_and(|r| !r.is_empty()),
            "{item}"
        );
        let at = utc(&item["at"]);
        assert!(
            at >= started && at <= Utc::now() + chrono::Duration::seconds(5),
            "{at} is not around now"
        );
        if let Some(newer) = previous {
            assert!(at <= newer, "not newest first: {body}");
        }
        previous = Some(at);
    }
}

#[tokio::test]
async fn the_ledger_pages_with_limit_and_the_next_cursor_without_repeating_an_item() {
    // Arrange: 1 created + 4 adjustments = 5 rows.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    for n in 1..=4 {
        adjust_ok(&app, "A", &format!("adj-{n}"), n).await;
    }
    let all = ids(&page(&app, "A", "").await);
    assert_eq!(all.len(), 5);

    // Act
    let first = page(&app, "A", "limit=2").await;
    let next = first["next"].as_str().expect("a next cursor").to_owned();
    let second = page(&app, "A", &format!("limit=2&before={next}")).await;
    let next = second["next"].as_str().expect("a next cursor").to_owned();
    let third = page(&app, "A", &format!("before={next}&limit=2")).await;

    // Assert
    assert_eq!(ids(&first).len(), 2, "{first}");
    assert_eq!(ids(&second).len(), 2, "{second}");
    assert_eq!(ids(&third).len(), 1, "{third}");
    assert_eq!(third["next"], Value::Null, "{third}");
    let paged: Vec<String> = [ids(&first), ids(&second), ids(&third)].concat();
    assert_eq!(
        paged, all,
        "the pages together are the whole ledger, in order"
    );
    assert_eq!(third["items"][0]["kind"], "created");
}

#[tokio::test]
async fn a_page_that_ends_exactly_at_the_oldest_row_has_next_null() {
    // Arrange: 1 created + 1 adjustment = 2 rows.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    adjust_ok(&app, "A", "adj-1", 1).await;

    // Act
    let body = page(&app, "A", "limit=2").await;

    // Assert
    assert_eq!(ids(&body).len(), 2, "{body}");
    assert_eq!(body["next"], Value::Null, "{body}");
}

#[tokio::test]
async fn the_ledger_of_an_unknown_sku_is_404_not_found() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;

    // Act
    let res = app.ledger("NOPE", "").await;

    // Assert
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn bad_ledger_queries_are_422_naming_the_parameter() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let cases: [(&str, &'static [&'static str]); 8] = [
        ("limit=0", &["limit"]),
        ("limit=1001", &["limit"]),
        ("limit=x", &["limit"]),
        ("limit=-1", &["limit"]),
        ("before=abc", &["before"]),
        ("before=0", &["before"]),
        ("colour=red", &["colour"]),
        (
            "limit=0&before=abc&colour=red",
            &["limit", "before", "colour"],
        ),
    ];
    let mut failures = Failures::default();

    for (query, fields) in cases {
        // Act
        let res = app.ledger("A", query).await;

        // Assert
        let outcome = check_refusal(res, Expect::InvalidExactly(fields))
            .await
            .map(drop);
        failures.record(query, outcome);
    }
    failures.assert_none();
}

#[tokio::test]
async fn a_limit_of_1000_is_within_the_limit() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;

    // Act
    let body = page(&app, "A", "limit=1000").await;

    // Assert
    assert_eq!(ids(&body).len(), 1, "{body}");
}

#[tokio::test]
async fn only_admin_may_read_the_ledger() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;

    for key in [STOREFRONT, CALLCENTRE] {
        // Act
        let res = app
            .request(Method::GET, "/v1/skus/A/ledger", Some(key), None)
            .await;

        // Assert
        assert_problem(res, 403, "forbidden").await;
    }
    let res = app
        .request(Method::GET, "/v1/skus/A/ledger", None, None)
        .await;
    assert_problem(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn ledger_rows_cannot_be_updated_or_deleted() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    adjust_ok(&app, "A", "adj-1", 5).await;
    let before = page(&app, "A", "").await;

    // Act
    let updated = sqlx::query("UPDATE stock_movements SET delta = 0")
        .execute(app.db())
        .await;
    let deleted = sqlx::query("DELETE FROM stock_movements")
        .execute(app.db())
        .await;

    // Assert
    let updated = updated.expect_err("UPDATE of stock_movements must fail");
    assert!(
        updated.to_string().contains("never updated or deleted"),
        "{updated}"
    );
    let deleted = deleted.expect_err("DELETE from stock_movements must fail");
    assert!(
        deleted.to_string().contains("never updated or deleted"),
        "{deleted}"
    );
    assert_eq!(page(&app, "A", "").await, before, "the rows are intact");
}
