//! Many buyers at once never sell a unit twice. Driven through the typed
//! client (stockhold-client), as a shop's backend would.

use crate::helpers::*;
use futures_util::future::join_all;
use std::collections::BTreeMap;
use stockhold_client::{codes, Client, CommitOutcome, CommitRequest, Line, ReserveRequest};

#[tokio::test]
async fn a_thousand_concurrent_buyers_for_a_hundred_units_buy_exactly_a_hundred() {
    // Arrange
    rlimit::increase_nofile_limit(10_000).expect("raise the open-file limit");
    let app = spawn_app().await;
    app.create_sku("HOT", 100).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let client = Client::with_http_client(http, &app.address, STOREFRONT).unwrap();

    // Act: 1 000 buyers, each reserving one unit and committing if it got one.
    let results = join_all((0..1000).map(|i| {
        let client = client.clone();
        async move {
            let mut basket = ReserveRequest::new(vec![Line::new("HOT", 1)]);
            basket.customer_id = Some(format!("c{i}"));
            match client.reserve(&basket).await {
                Ok(hold) => match client.commit(&hold.id, &CommitRequest::default()).await {
                    // Pending (202): sold, with Postgres too slow to answer
                    // in time on a loaded machine; the drain persists it.
                    Ok(CommitOutcome::Persisted(_) | CommitOutcome::Pending(_)) => "sold",
                    Ok(other) => panic!("commit answered {other:?}"),
                    Err(e) => panic!("commit failed: {e}"),
                },
                Err(e) if e.code() == Some(codes::INSUFFICIENT_STOCK) => "refused",
                Err(e) => panic!("reserve failed: {e}"),
            }
        }
    }))
    .await;

    // Assert
    let mut by_outcome: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &results {
        *by_outcome.entry(r).or_default() += 1;
    }
    assert_eq!(by_outcome.get("sold"), Some(&100), "{by_outcome:?}");
    assert_eq!(by_outcome.get("refused"), Some(&900), "{by_outcome:?}");
    assert_eq!(app.counts("HOT").await, (0, 0, 0));
    let persisted = app
        .eventually(std::time::Duration::from_secs(10), || async {
            let (orders, sold): (i64, Option<i64>) = sqlx::query_as(
                "SELECT count(DISTINCT order_id), sum(qty)::bigint FROM order_lines",
            )
            .fetch_one(app.db())
            .await
            .unwrap();
            (orders, sold) == (100, Some(100))
        })
        .await;
    assert!(persisted, "100 orders of 1 unit in Postgres");
    let (on_hand,): (i64,) = sqlx::query_as("SELECT on_hand FROM sku_stock WHERE sku = 'HOT'")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(on_hand, 0);
}
