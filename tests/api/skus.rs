//! SKU set-up (`PUT /v1/skus/{sku}`), the SKU view and availability.

use crate::helpers::*;
use crate::validation::{check_refusal, error_fields, Expect, Snapshot};
use reqwest::Method;
use serde_json::{json, Value};

/// The ledger rows of `sku`, oldest first: (kind, delta, on_hand_after).
async fn movements(app: &TestApp, sku: &str) -> Vec<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT kind, delta, on_hand_after FROM stock_movements WHERE sku = $1 ORDER BY id",
    )
    .bind(sku)
    .fetch_all(app.db())
    .await
    .unwrap()
}

/// `on_hand` of `sku` in the Postgres `skus` table.
async fn persisted_on_hand(app: &TestApp, sku: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT on_hand FROM sku_stock WHERE sku = $1")
        .bind(sku)
        .fetch_optional(app.db())
        .await
        .unwrap()
}

/// PUTs `body` to `sku` as admin, asserting the status; returns the view.
async fn put_ok(app: &TestApp, sku: &str, body: Value, status: u16) -> Value {
    let res = app.put_sku(sku, body.clone()).await;
    assert_eq!(
        res.status(),
        status,
        "PUT {sku} {body}: {}",
        res.text().await.unwrap()
    );
    res.json().await.unwrap()
}

#[tokio::test]
async fn put_creates_a_sku_with_201_and_answers_its_view() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let view = put_ok(
        &app,
        "TSHIRT-M",
        json!({ "on_hand": 120, "backorder_limit": 3, "per_customer_limit": 2,
                "sale_starts_at": "2026-12-12T00:00:00Z" }),
        201,
    )
    .await;

    // Assert
    let expected = json!({
        "sku": "TSHIRT-M", "on_hand": 120, "held": 0, "available": 123,
        "backorder_limit": 3, "per_customer_limit": 2,
        "sale_starts_at": "2026-12-12T00:00:00.000Z"
    });
    assert_eq!(view, expected);
    assert_eq!(app.sku("TSHIRT-M").await, expected);
}

#[tokio::test]
async fn a_sku_created_with_only_on_hand_has_no_limits_and_no_sale_start() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let view = put_ok(&app, "A", json!({ "on_hand": 5 }), 201).await;

    // Assert: every member of the view is present, the unset ones as null.
    assert_eq!(
        view,
        json!({ "sku": "A", "on_hand": 5, "held": 0, "available": 5, "backorder_limit": 0,
                "per_customer_limit": null, "sale_starts_at": null })
    );
}

#[tokio::test]
async fn every_allowed_sku_character_may_be_used() {
    // Arrange
    let app = spawn_app().await;
    let longest = "Z".repeat(64);

    // Act / Assert
    for sku in ["Az09._:-", longest.as_str()] {
        let view = put_ok(&app, sku, json!({ "on_hand": 1 }), 201).await;
        assert_eq!(view["sku"], sku);
        assert_eq!(app.sku(sku).await["on_hand"], 1);
    }
}

#[tokio::test]
async fn put_again_updates_with_200_and_keeps_the_fields_it_does_not_name() {
    // Arrange
    let app = spawn_app().await;
    put_ok(
        &app,
        "A",
        json!({ "on_hand": 10, "backorder_limit": 2, "per_customer_limit": 3,
                "sale_starts_at": "2026-12-12T00:00:00Z" }),
        201,
    )
    .await;
    let all = |on_hand: i64, bo: i64| {
        json!({ "sku": "A", "on_hand": on_hand, "held": 0, "available": on_hand + bo,
                "backorder_limit": bo, "per_customer_limit": 3,
                "sale_starts_at": "2026-12-12T00:00:00.000Z" })
    };

    // Act / Assert
    assert_eq!(
        put_ok(&app, "A", json!({ "on_hand": 7 }), 200).await,
        all(7, 2)
    );
    assert_eq!(
        put_ok(&app, "A", json!({ "backorder_limit": 4 }), 200).await,
        all(7, 4)
    );
    assert_eq!(put_ok(&app, "A", json!({}), 200).await, all(7, 4));
    assert_eq!(app.sku("A").await, all(7, 4));
}

#[tokio::test]
async fn null_clears_the_per_customer_limit_and_the_sale_start() {
    // Arrange
    let app = spawn_app().await;
    put_ok(
        &app,
        "A",
        json!({ "on_hand": 10, "per_customer_limit": 3, "sale_starts_at": "2026-12-12T00:00:00Z" }),
        201,
    )
    .await;

    // Act
    let cleared = put_ok(&app, "A", json!({ "per_customer_limit": null }), 200).await;
    let both = put_ok(&app, "A", json!({ "sale_starts_at": null }), 200).await;

    // Assert
    assert_eq!(cleared["per_customer_limit"], Value::Null);
    assert_eq!(cleared["sale_starts_at"], "2026-12-12T00:00:00.000Z");
    assert_eq!(both["per_customer_limit"], Value::Null);
    assert_eq!(both["sale_starts_at"], Value::Null);
    assert_eq!(app.sku("A").await, both);
    // A cleared limit no longer requires a customer_id.
    app.hold(&[("A", 5)]).await;
}

#[tokio::test]
async fn sale_starts_at_round_trips_as_utc_with_milliseconds() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 1).await;

    // Act / Assert
    for (sent, returned) in [
        ("2026-12-12T00:00:00Z", "2026-12-12T00:00:00.000Z"),
        ("2026-12-12T00:00:00.123Z", "2026-12-12T00:00:00.123Z"),
        ("2026-12-12T01:30:00.5+02:00", "2026-12-11T23:30:00.500Z"),
        ("2026-12-11T19:00:00-05:00", "2026-12-12T00:00:00.000Z"),
        ("2030-01-01T00:00:00+00:00", "2030-01-01T00:00:00.000Z"),
    ] {
        let view = put_ok(&app, "A", json!({ "sale_starts_at": sent }), 200).await;
        assert_eq!(view["sale_starts_at"], returned, "PUT {sent}");
        assert_eq!(
            app.sku("A").await["sale_starts_at"],
            returned,
            "GET after {sent}"
        );
    }
}

#[tokio::test]
async fn setting_on_hand_below_what_holds_need_is_409_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 6)]).await;
    let before = Snapshot::take(&app, &["A"]).await;
    let ledger = movements(&app, "A").await;

    // Act
    let res = app
        .put_sku("A", json!({ "on_hand": 5, "backorder_limit": 0 }))
        .await;

    // Assert
    let problem = check_refusal(res, Expect::Problem(409, "insufficient_stock"))
        .await
        .unwrap();
    let shortages = problem["shortages"].as_array().expect("shortages listed");
    assert_eq!(shortages.len(), 1, "{problem}");
    assert_eq!(shortages[0]["sku"], "A", "{problem}");
    before.unchanged(&app).await.unwrap();
    assert_eq!(app.counts("A").await, (10, 6, 4));
    assert_eq!(movements(&app, "A").await, ledger);
    assert_eq!(persisted_on_hand(&app, "A").await, Some(10));
}

#[tokio::test]
async fn setting_on_hand_to_exactly_what_holds_need_leaves_nothing_available() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 6)]).await;

    // Act
    let view = put_ok(&app, "A", json!({ "on_hand": 6 }), 200).await;

    // Assert
    assert_eq!(
        (view["on_hand"].as_i64(), view["held"].as_i64()),
        (Some(6), Some(6))
    );
    assert_eq!(view["available"], 0);
    assert_eq!(app.counts("A").await, (6, 6, 0));
    let res = app.availability(&["A"]).await;
    let items: Value = res.json().await.unwrap();
    assert_eq!(
        items["items"],
        json!([ { "sku": "A", "available": 0, "in_stock": false } ])
    );
}

#[tokio::test]
async fn the_backorder_limit_counts_towards_what_holds_need() {
    // Arrange: 6 held against 10 on hand.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 6)]).await;

    // Act / Assert: with 2 on backorder, 4 on hand cover the holds, 3 do not.
    put_ok(
        &app,
        "A",
        json!({ "on_hand": 4, "backorder_limit": 2 }),
        200,
    )
    .await;
    assert_eq!(app.counts("A").await, (4, 6, 0));
    let res = app.put_sku("A", json!({ "on_hand": 3 })).await;
    check_refusal(res, Expect::Problem(409, "insufficient_stock"))
        .await
        .unwrap();
    let res = app.put_sku("A", json!({ "backorder_limit": 1 })).await;
    check_refusal(res, Expect::Problem(409, "insufficient_stock"))
        .await
        .unwrap();
    assert_eq!(app.sku("A").await["backorder_limit"], 2);
    assert_eq!(app.counts("A").await, (4, 6, 0));
}

#[tokio::test]
async fn setting_on_hand_is_recorded_in_the_ledger_by_the_difference() {
    // Arrange
    let app = spawn_app().await;

    // Act
    put_ok(&app, "A", json!({ "on_hand": 120 }), 201).await;
    put_ok(&app, "A", json!({ "on_hand": 150 }), 200).await;
    put_ok(&app, "A", json!({ "on_hand": 100 }), 200).await;

    // Assert
    assert_eq!(
        movements(&app, "A").await,
        [
            ("created".to_owned(), 120, 120),
            ("adjustment".to_owned(), 30, 150),
            ("adjustment".to_owned(), -50, 100),
        ]
    );
    assert_eq!(persisted_on_hand(&app, "A").await, Some(100));
}

#[tokio::test]
async fn a_put_that_leaves_on_hand_as_it_is_records_no_movement() {
    // Arrange
    let app = spawn_app().await;
    put_ok(&app, "A", json!({ "on_hand": 20 }), 201).await;

    // Act
    put_ok(&app, "A", json!({ "on_hand": 20 }), 200).await;
    put_ok(
        &app,
        "A",
        json!({ "backorder_limit": 5, "per_customer_limit": 2 }),
        200,
    )
    .await;

    // Assert
    assert_eq!(movements(&app, "A").await, [("created".to_owned(), 20, 20)]);
    assert_eq!(persisted_on_hand(&app, "A").await, Some(20));
}

#[tokio::test]
async fn a_sku_created_with_zero_on_hand_is_recorded_as_created() {
    // Arrange
    let app = spawn_app().await;

    // Act
    put_ok(&app, "A", json!({ "on_hand": 0 }), 201).await;

    // Assert
    assert_eq!(movements(&app, "A").await, [("created".to_owned(), 0, 0)]);
    assert_eq!(persisted_on_hand(&app, "A").await, Some(0));
}

#[tokio::test]
async fn on_hand_set_under_holds_is_adjusted_against_the_live_count() {
    // Arrange: holds do not change on_hand, so the difference is to on_hand.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.hold(&[("A", 4)]).await;

    // Act
    put_ok(&app, "A", json!({ "on_hand": 12 }), 200).await;

    // Assert
    assert_eq!(app.counts("A").await, (12, 4, 8));
    assert_eq!(
        movements(&app, "A").await.last().unwrap(),
        &("adjustment".to_owned(), 2, 12)
    );
    assert_eq!(persisted_on_hand(&app, "A").await, Some(12));
}

#[tokio::test]
async fn an_unknown_sku_is_404() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 1).await;

    // Act / Assert
    for sku in ["NOPE", "a", "bad%20sku"] {
        let res = app.get_sku(sku).await;
        check_refusal(res, Expect::Problem(404, "not_found"))
            .await
            .unwrap_or_else(|e| panic!("GET /v1/skus/{sku}: {e}"));
    }
}

#[tokio::test]
async fn any_role_may_read_a_sku() {
    // Arrange
    let app = spawn_app().await;
    let created = put_ok(
        &app,
        "A",
        json!({ "on_hand": 8, "backorder_limit": 1 }),
        201,
    )
    .await;

    // Act / Assert
    for key in [STOREFRONT, CALLCENTRE, ADMIN] {
        let res = app
            .request(Method::GET, "/v1/skus/A", Some(key), None)
            .await;
        assert_eq!(res.status(), 200, "{key}");
        assert_eq!(res.json::<Value>().await.unwrap(), created, "{key}");
    }
}

#[tokio::test]
async fn the_sku_view_counts_held_units() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;

    // Act
    app.hold(&[("A", 3)]).await;
    app.hold(&[("A", 2)]).await;

    // Assert
    assert_eq!(app.counts("A").await, (10, 5, 5));
}

/// The items of an availability answer, asserting 200.
async fn availability(app: &TestApp, skus: &[&str]) -> Value {
    let res = app.availability(skus).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    res.json::<Value>().await.unwrap()["items"].clone()
}

#[tokio::test]
async fn availability_lists_items_in_the_order_asked_with_unknown_skus_as_0() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 3).await;

    // Act
    let items = availability(&app, &["B", "NOPE", "A"]).await;

    // Assert
    assert_eq!(
        items,
        json!([
            { "sku": "B", "available": 3, "in_stock": true },
            { "sku": "NOPE", "available": 0, "in_stock": false },
            { "sku": "A", "available": 10, "in_stock": true },
        ])
    );
}

#[tokio::test]
async fn availability_reflects_holds_and_the_backorder_limit() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("HELD", 10).await;
    app.create_sku("GONE", 2).await;
    put_ok(
        &app,
        "BACK",
        json!({ "on_hand": 0, "backorder_limit": 4 }),
        201,
    )
    .await;
    put_ok(
        &app,
        "MIX",
        json!({ "on_hand": 5, "backorder_limit": 2 }),
        201,
    )
    .await;
    app.create_sku("EMPTY", 0).await;
    app.hold(&[("HELD", 3), ("GONE", 2), ("MIX", 6)]).await;

    // Act
    let items = availability(&app, &["HELD", "GONE", "BACK", "MIX", "EMPTY"]).await;

    // Assert
    assert_eq!(
        items,
        json!([
            { "sku": "HELD", "available": 7, "in_stock": true },
            { "sku": "GONE", "available": 0, "in_stock": false },
            { "sku": "BACK", "available": 4, "in_stock": true },
            { "sku": "MIX", "available": 1, "in_stock": true },
            { "sku": "EMPTY", "available": 0, "in_stock": false },
        ])
    );
}

#[tokio::test]
async fn availability_keeps_duplicates_in_the_order_asked() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 1).await;

    // Act
    let items = availability(&app, &["A", "B", "A", "NOPE", "A"]).await;

    // Assert
    let skus: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["A", "B", "A", "NOPE", "A"]);
    assert_eq!(items[0], items[2]);
    assert_eq!(
        items[0],
        json!({ "sku": "A", "available": 10, "in_stock": true })
    );
}

#[tokio::test]
async fn availability_follows_a_hold_and_its_release() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 4).await;

    // Act / Assert
    let id = app.hold(&[("A", 4)]).await;
    assert_eq!(availability(&app, &["A"]).await[0]["available"], 0);
    assert_eq!(app.release(&id).await.status(), 200);
    assert_eq!(availability(&app, &["A"]).await[0]["available"], 4);
}

/// `GET /v1/skus?{query}` as `key`.
async fn list(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    app.request(Method::GET, &format!("/v1/skus?{query}"), Some(key), None)
        .await
}

#[tokio::test]
async fn the_sku_list_pages_through_a_prefix_in_name_order_with_live_counts() {
    // Arrange: five SKUs under A-, one under B-, one with an allocation
    // (whose ledger account is not a SKU).
    let app = spawn_app().await;
    for sku in ["A-5", "A-1", "B-1", "A-3", "A-2"] {
        app.create_sku(sku, 10).await;
    }
    let res = app
        .put_sku("A-4", json!({ "on_hand": 7, "allocations": { "web": 2 } }))
        .await;
    assert_eq!(res.status(), 201);
    app.hold(&[("A-2", 3)]).await;

    // Act: pages of two.
    let mut pages: Vec<Vec<(String, i64)>> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let query = match &cursor {
            Some(c) => format!("prefix=A-&limit=2&cursor={c}"),
            None => "prefix=A-&limit=2".to_owned(),
        };
        let res = list(&app, ADMIN, &query).await;
        assert_eq!(res.status(), 200);
        let page: Value = res.json().await.unwrap();
        pages.push(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    (
                        v["sku"].as_str().unwrap().to_owned(),
                        v["available"].as_i64().unwrap(),
                    )
                })
                .collect(),
        );
        cursor = page["next"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }

    // Assert
    let named = |v: &[(&str, i64)]| -> Vec<(String, i64)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    };
    assert_eq!(
        pages,
        [
            named(&[("A-1", 10), ("A-2", 7)]),
            named(&[("A-3", 10), ("A-4", 7)]),
            named(&[("A-5", 10)]),
        ]
    );
    // Without a prefix: every SKU, the allocation's account not among them.
    let all: Value = list(&app, ADMIN, "").await.json().await.unwrap();
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["sku"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["A-1", "A-2", "A-3", "A-4", "A-5", "B-1"]);
    assert_eq!(all["next"], Value::Null);
    assert_eq!(all["items"][3]["allocations"], json!({ "web": 2 }));
}

#[tokio::test]
async fn the_sku_list_is_for_admins_and_refuses_bad_parameters_listing_each() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 1).await;

    // Act
    let storefront = list(&app, STOREFRONT, "").await;
    let bad = list(&app, ADMIN, "prefix=a%20b&cursor=x%2Fy&limit=0&sort=desc").await;
    let too_many = list(&app, ADMIN, "limit=501").await;

    // Assert
    assert_problem(storefront, 403, "forbidden").await;
    let body = assert_problem(bad, 422, "validation_failed").await;
    let fields = error_fields(&body).unwrap();
    assert_eq!(fields, ["prefix", "cursor", "limit", "sort"]);
    assert_problem(too_many, 422, "validation_failed").await;
}
