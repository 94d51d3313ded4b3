//! Holds expire by themselves; commit and expiry of one hold have exactly
//! one winner.

use crate::helpers::*;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use rand::Rng;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn an_expired_hold_returns_its_units_by_itself_within_two_seconds() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let res = app
        .reserve(json!({ "lines": [{ "sku": "A", "qty": 4 }], "ttl_seconds": 1 }))
        .await;
    assert_eq!(res.status(), 201);
    let hold: Value = res.json().await.unwrap();
    let expires_at: DateTime<Utc> = hold["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.counts("A").await, (10, 4, 6));

    // Act: nothing but reads of the SKU (which never expire anything).
    let back = app
        .eventually(Duration::from_secs(4), || async {
            app.counts("A").await == (10, 0, 10)
        })
        .await;

    // Assert
    assert!(back, "units not returned: {:?}", app.counts("A").await);
    let late = Utc::now() - expires_at;
    assert!(
        late < chrono::Duration::milliseconds(2000),
        "returned {late} after expires_at"
    );
    let res = app.get_reservation(hold["id"].as_str().unwrap()).await;
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "expired");
}

#[tokio::test]
async fn commit_racing_expiry_on_200_holds_has_exactly_one_winner_each() {
    // Arrange: 200 one-unit holds that run out in about a second.
    let app = spawn_app().await;
    app.create_sku("RACE", 200).await;
    let holds: Vec<Value> = join_all((0..200).map(|_| async {
        let res = app
            .reserve(json!({ "lines": [{ "sku": "RACE", "qty": 1 }], "ttl_seconds": 1 }))
            .await;
        assert_eq!(res.status(), 201);
        res.json::<Value>().await.unwrap()
    }))
    .await;

    // Act: commit each around its own expires_at, some before and some after.
    let outcomes = join_all(holds.iter().map(|hold| {
        let app = &app;
        let jitter = rand::thread_rng().gen_range(-60..60);
        async move {
            let expires_at: DateTime<Utc> = hold["expires_at"].as_str().unwrap().parse().unwrap();
            let at = expires_at + chrono::Duration::milliseconds(jitter);
            if let Ok(wait) = (at - Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
            let id = hold["id"].as_str().unwrap();
            let status = app.commit(id, json!({})).await.status().as_u16();
            (id.to_owned(), status)
        }
    }))
    .await;

    // Assert: each commit either won (201, or 202 when Postgres was slow on
    // a loaded machine: committed) or lost (410, expired).
    let mut committed = 0;
    for (id, status) in &outcomes {
        let final_status =
            app.get_reservation(id).await.json::<Value>().await.unwrap()["status"].clone();
        match status {
            201 | 202 => {
                committed += 1;
                assert_eq!(final_status, "committed", "{id}");
            }
            410 => assert_eq!(final_status, "expired", "{id}"),
            other => panic!("commit of {id} answered {other}"),
        }
    }
    assert!(
        app.eventually(Duration::from_secs(4), || async {
            app.counts("RACE").await.1 == 0
        })
        .await
    );
    assert_eq!(
        app.counts("RACE").await,
        (200 - committed, 0, 200 - committed)
    );
    let persisted = app
        .eventually(Duration::from_secs(10), || async {
            let (orders,): (i64,) = sqlx::query_as("SELECT count(*) FROM orders")
                .fetch_one(app.db())
                .await
                .unwrap();
            orders == committed
        })
        .await;
    assert!(persisted, "every won commit is in Postgres");
    println!("commit won {committed} of 200 races against expiry");
}
