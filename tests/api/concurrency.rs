//! Many buyers at once never sell a unit twice.

use crate::helpers::*;
use futures_util::future::join_all;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[tokio::test]
async fn a_thousand_concurrent_buyers_for_a_hundred_units_buy_exactly_a_hundred() {
    // Arrange
    rlimit::increase_nofile_limit(10_000).expect("raise the open-file limit");
    let app = spawn_app().await;
    app.create_sku("HOT", 100).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    // Act: 1 000 buyers, each reserving one unit and committing if it got one.
    let results = join_all((0..1000).map(|i| {
        let client = client.clone();
        let base = app.address.clone();
        async move {
            let res = client
                .post(format!("{base}/v1/reservations"))
                .bearer_auth(STOREFRONT)
                .json(&json!({ "lines": [{ "sku": "HOT", "qty": 1 }], "customer_id": format!("c{i}") }))
                .send()
                .await
                .expect("every request is answered");
            let reserved = res.status().as_u16();
            if reserved != 201 {
                return (reserved, None);
            }
            let id = res.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
            let commit = client
                .post(format!("{base}/v1/reservations/{id}/commit"))
                .bearer_auth(STOREFRONT)
                .json(&json!({}))
                .send()
                .await
                .expect("every commit is answered");
            (reserved, Some(commit.status().as_u16()))
        }
    }))
    .await;

    // Assert
    let mut by_status: BTreeMap<(u16, Option<u16>), usize> = BTreeMap::new();
    for r in &results {
        *by_status.entry(*r).or_default() += 1;
    }
    assert_eq!(
        by_status.get(&(201, Some(201))),
        Some(&100),
        "{by_status:?}"
    );
    assert_eq!(by_status.get(&(409, None)), Some(&900), "{by_status:?}");
    assert_eq!(app.counts("HOT").await, (0, 0, 0));
    let (orders, sold): (i64, Option<i64>) =
        sqlx::query_as("SELECT count(DISTINCT order_id), sum(qty)::bigint FROM order_lines")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!((orders, sold), (100, Some(100)));
    let (on_hand,): (i64,) = sqlx::query_as("SELECT on_hand FROM skus WHERE sku = 'HOT'")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(on_hand, 0);
}
