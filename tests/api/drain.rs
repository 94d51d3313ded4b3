//! The outbox drain: several at once (two instances' drains, and the
//! parallel transactions of one) add each entry's movements to
//! `skus.on_hand` exactly once and move the watermark to the end.

use crate::helpers::*;
use futures_util::future::join_all;
use std::time::Duration;
use stockhold::domain::{OrderId, OutboxEvent, ReservationId, ReserveRequest, Sku, StreamId};
use stockhold::reconciler::{Drain, Outcome};

/// Commits made in Redis only (as while Postgres is away): `n` holds of one
/// unit of each of `skus`, committed.
async fn commit_in_redis_only(app: &TestApp, skus: &[Sku], n: usize) {
    for _ in 0..n {
        let home = app.stock.engine.home_for(&req_lines(skus));
        let id = ReservationId::random(home);
        let req = ReserveRequest {
            lines: skus.iter().map(|s| (s.clone(), 1)).collect(),
            ttl_seconds: 600,
            customer_id: None,
            channel: None,
            allow_partial: false,
        };
        app.stock.engine.reserve(&id, &req).await.unwrap();
        let committed = app
            .stock
            .engine
            .commit(&id, &OrderId::for_reservation(&id), None)
            .await
            .unwrap();
        assert!(!committed.outbox.is_empty());
    }
}

fn req_lines(skus: &[Sku]) -> Vec<(Sku, i64)> {
    skus.iter().map(|s| (s.clone(), 1)).collect()
}

/// Steps `drain` until it finds nothing to do.
async fn run_until_idle(drain: Drain) {
    for _ in 0..10_000 {
        if let (Outcome::Idle, _) = drain.try_execute_task().await.unwrap() {
            return;
        }
    }
    panic!("the drain never caught up");
}

#[tokio::test]
async fn three_drains_at_once_add_every_commit_to_the_persisted_on_hand_exactly_once() {
    // Arrange: a backlog of 150 sales of 3 SKUs that only Redis knows of.
    let app = spawn_app().await;
    let skus: Vec<Sku> = ["A", "B", "C"]
        .iter()
        .map(|s| Sku::parse(s).unwrap())
        .collect();
    for s in &skus {
        app.create_sku(s.as_str(), 1_000).await;
    }
    commit_in_redis_only(&app, &skus, 150).await;

    // Act: the app's own drain runs meanwhile; three more, with small
    // batches recorded in parallel, race it and each other.
    let drains = (0..3).map(|i| {
        let drain = Drain::new(app.stock.clone(), 64 + i * 7, 2, Duration::from_secs(600));
        tokio::spawn(run_until_idle(drain))
    });
    for d in join_all(drains).await {
        d.unwrap();
    }

    // Assert: the column only the drain moves, the ledger's view, and the
    // movements all agree, and every order is there once.
    let caught_up = app
        .eventually(Duration::from_secs(10), || async {
            let (behind,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM stock_movements m
                 LEFT JOIN outbox_watermark w ON w.partition = m.outbox_partition
                 WHERE (m.outbox_ms, m.outbox_seq)
                       > (coalesce(w.stream_ms, 0), coalesce(w.stream_seq, 0))",
            )
            .fetch_one(app.db())
            .await
            .unwrap();
            behind == 0
        })
        .await;
    assert!(caught_up, "the watermark did not reach the last entry");
    for s in &skus {
        let (raw, ledger, moved): (i64, i64, i64) = sqlx::query_as(
            "SELECT s.on_hand, t.on_hand,
                    (SELECT sum(delta)::bigint FROM stock_movements m WHERE m.sku = s.sku)
             FROM skus s JOIN sku_stock t USING (sku) WHERE s.sku = $1",
        )
        .bind(s.as_str())
        .fetch_one(app.db())
        .await
        .unwrap();
        assert_eq!((raw, ledger, moved), (850, 850, 850), "{s}");
    }
    let (orders, lines): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_lines)")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!((orders, lines), (150, 450));
    assert_eq!(app.counts("A").await.0, 850, "Redis on_hand");
}

#[tokio::test]
async fn an_entry_named_twice_in_one_batch_is_recorded_once_with_its_change_of_on_hand() {
    // Arrange: one sale of A and B that only Redis knows of, and no drain of
    // the app's own in the way.
    let app = spawn_app_with(|s| s.reconciler.drain_interval_ms = 3_600_000).await;
    let skus: Vec<Sku> = ["A", "B"].iter().map(|s| Sku::parse(s).unwrap()).collect();
    for s in &skus {
        app.create_sku(s.as_str(), 10).await;
    }
    commit_in_redis_only(&app, &skus, 1).await;
    let home = app.stock.engine.home_for(&req_lines(&skus));
    let sale = app
        .stock
        .engine
        .outbox_after(home, StreamId::default(), 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| matches!(e.event, OutboxEvent::Commit { .. }))
        .expect("the sale's outbox entry");

    // Act: one batch naming it twice (a commit and its retry), then the drain.
    let recorded = app
        .stock
        .ledger
        .record(&[sale.clone(), sale])
        .await
        .unwrap();
    let drain = Drain::new(app.stock.clone(), 100, 2, Duration::from_secs(600));
    run_until_idle(drain).await;

    // Assert: one order, one movement per SKU, and the drain's on_hand
    // counts the sale once.
    assert_eq!(recorded, 1);
    let (orders, movements): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM orders),
                (SELECT count(*) FROM stock_movements WHERE kind = 'commit')",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!((orders, movements), (1, 2));
    for s in &skus {
        let (raw, ledger): (i64, i64) = sqlx::query_as(
            "SELECT s.on_hand, t.on_hand FROM skus s JOIN sku_stock t USING (sku) WHERE s.sku = $1",
        )
        .bind(s.as_str())
        .fetch_one(app.db())
        .await
        .unwrap();
        assert_eq!((raw, ledger), (9, 9), "{s}");
    }
}
