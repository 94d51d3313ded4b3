//! The typed client against a running stockhold: every method at least once,
//! and every problem code with extra members read through its accessor.

mod common;

use chrono::{Duration, Utc};
use common::{spawn_app, CALLCENTRE, STOREFRONT};
use stockhold_client::{
    codes, Adjustment, CommitOutcome, CommitRequest, Error, LedgerKind, Line, PatchReservation,
    PutSku, ReconcileRequest, ReservationStatus, ReserveRequest, ReturnRequest, Shortage,
};

#[tokio::test]
async fn health_and_readiness_answer_ok() {
    let app = spawn_app().await;
    let anonymous = app.client("");

    anonymous.healthz().await.expect("healthz");
    let ready = anonymous.readyz().await.expect("readyz");

    assert!(ready.ready, "{:?}", ready.reasons);
}

#[tokio::test]
async fn put_sku_creates_then_updates_and_reads_back() {
    let app = spawn_app().await;

    let created = app.admin.put_sku("A", &PutSku::create(10)).await.unwrap();
    let change = PutSku::default().backorder_limit(1).per_customer_limit(2);
    let updated = app.admin.put_sku("A", &change).await.unwrap();
    let read = app.client(STOREFRONT).sku("A").await.unwrap();
    let clear = PutSku {
        per_customer_limit: Some(None),
        ..PutSku::default()
    };
    let cleared = app.admin.put_sku("A", &clear).await.unwrap();

    assert!(created.created);
    assert_eq!(created.value.on_hand, 10);
    assert!(!updated.created);
    assert_eq!(read, updated.value);
    assert_eq!(
        (
            read.on_hand,
            read.held,
            read.available,
            read.backorder_limit
        ),
        (10, 0, 11, 1)
    );
    assert_eq!(read.per_customer_limit, Some(2));
    assert_eq!(cleared.value.per_customer_limit, None);
}

#[tokio::test]
async fn availability_lists_skus_in_the_order_asked() {
    let app = spawn_app().await;
    app.create_sku("B", 3).await;
    app.create_sku("A", 0).await;

    let availability = app
        .client(STOREFRONT)
        .availability(&["B", "GHOST", "A"])
        .await
        .unwrap();

    let got: Vec<_> = availability
        .items
        .iter()
        .map(|i| (i.sku.as_str(), i.available, i.in_stock))
        .collect();
    assert_eq!(got, [("B", 3, true), ("GHOST", 0, false), ("A", 0, false)]);
}

#[tokio::test]
async fn a_hold_is_changed_committed_read_as_an_order_and_returned() {
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    let agent = app.client(CALLCENTRE);

    let basket = ReserveRequest::new(vec![Line::new("A", 2), Line::new("B", 1)])
        .ttl_seconds(7_200)
        .customer("c-1")
        .channel("phone");
    let held = agent.reserve(&basket).await.unwrap();
    let read = agent.reservation(&held.id).await.unwrap();
    let change = PatchReservation {
        lines: vec![Line::new("A", 3), Line::new("B", 0)],
        ttl_seconds: None,
    };
    let changed = agent.patch_reservation(&held.id, &change).await.unwrap();
    let commit = CommitRequest {
        order_id: Some("ord-1".into()),
        payment_ref: Some("psp-77".into()),
    };
    let first = agent.commit(&held.id, &commit).await.unwrap();
    let again = agent.commit(&held.id, &commit).await.unwrap();
    let after = agent.reservation(&held.id).await.unwrap();
    let order = agent.order("ord-1").await.unwrap();

    assert_eq!(held.status, ReservationStatus::Held);
    assert_eq!((held.expires_at - held.created_at).num_seconds(), 7_200);
    assert_eq!(held.customer_id.as_deref(), Some("c-1"));
    assert_eq!(held.channel.as_deref(), Some("phone"));
    assert_eq!(read, held);
    assert_eq!(changed.lines, [Line::new("A", 3)]);
    assert!(matches!(first, CommitOutcome::Persisted(_)), "{first:?}");
    assert!(
        matches!(again, CommitOutcome::AlreadyCommitted(_)),
        "{again:?}"
    );
    assert_eq!(after.status, ReservationStatus::Committed);
    assert_eq!(after.order_id.as_deref(), Some("ord-1"));
    assert_eq!(&order, first.order());
    assert!(order.is_persisted());
    assert_eq!(order.payment_ref.as_deref(), Some("psp-77"));
    assert_eq!((order.lines[0].sku.as_str(), order.lines[0].qty), ("A", 3));
    assert_eq!(app.admin.sku("A").await.unwrap().on_hand, 7);

    let give_back = ReturnRequest {
        return_id: "rma-1".into(),
        lines: vec![Line::new("A", 1)],
        restock: true,
    };
    let returned = app.admin.return_order("ord-1", &give_back).await.unwrap();
    let repeat = app.admin.return_order("ord-1", &give_back).await.unwrap();

    assert!(returned.created);
    assert_eq!(returned.value.lines[0].returned_qty, 1);
    assert!(!repeat.created);
    assert_eq!(repeat.value, returned.value);
    assert_eq!(app.admin.sku("A").await.unwrap().on_hand, 8);
}

#[tokio::test]
async fn release_gives_the_units_back_and_may_be_repeated() {
    let app = spawn_app().await;
    app.create_sku("A", 4).await;
    let shop = app.client(STOREFRONT);
    let held = shop
        .reserve(&ReserveRequest::new(vec![Line::new("A", 4)]))
        .await
        .unwrap();

    let released = shop.release(&held.id).await.unwrap();
    let again = shop.release(&held.id).await.unwrap();

    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(again.status, ReservationStatus::Released);
    assert_eq!(shop.sku("A").await.unwrap().available, 4);
}

#[tokio::test]
async fn a_partial_hold_lists_its_shortages() {
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    app.create_sku("B", 1).await;

    let held = app
        .client(STOREFRONT)
        .reserve(&ReserveRequest::new(vec![Line::new("A", 2), Line::new("B", 3)]).allow_partial())
        .await
        .unwrap();

    assert_eq!(held.lines, [Line::new("A", 2), Line::new("B", 1)]);
    assert_eq!(
        held.shortages,
        [Shortage {
            sku: "B".into(),
            requested: 3,
            available: 1
        }]
    );
}

#[tokio::test]
async fn adjustments_show_in_the_ledger_and_reconcile_finds_no_drift() {
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    let receipt = Adjustment {
        adjustment_id: "rcv-1".into(),
        delta: 5,
        reason: Some("receipt".into()),
    };

    let applied = app.admin.adjust("A", &receipt).await.unwrap();
    let repeat = app.admin.adjust("A", &receipt).await.unwrap();
    let newest = app.admin.ledger("A", Some(1), None).await.unwrap();
    let older = app
        .admin
        .ledger("A", Some(1), newest.next.as_deref())
        .await
        .unwrap();
    let whole = app.admin.ledger("A", None, None).await.unwrap();
    let report = app
        .admin
        .reconcile(&ReconcileRequest {
            repair: false,
            skus: Some(vec!["A".into()]),
        })
        .await
        .unwrap();

    assert!(applied.created);
    assert_eq!(applied.value.on_hand, 15);
    assert!(!repeat.created);
    assert_eq!(repeat.value.on_hand, 15);
    assert_eq!(newest.items.len(), 1);
    assert_eq!(newest.items[0].kind, LedgerKind::Adjustment);
    assert_eq!(
        (newest.items[0].delta, newest.items[0].on_hand_after),
        (5, 15)
    );
    assert_eq!(newest.items[0].reference.as_deref(), Some("rcv-1"));
    assert!(newest.next.is_some());
    assert_eq!(older.items[0].kind, LedgerKind::Created);
    assert_eq!(older.next, None);
    assert_eq!(whole.items.len(), 2);
    assert_eq!(report.checked, 1);
    assert!(report.drifted.is_empty());
    assert!(!report.repaired);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let shop = app.client(STOREFRONT).with_idempotency_key("basket-1");

    let first = shop
        .reserve(&ReserveRequest::new(vec![Line::new("A", 2)]))
        .await
        .unwrap();
    let repeat = shop
        .reserve(&ReserveRequest::new(vec![Line::new("A", 2)]))
        .await
        .unwrap();
    let other = shop
        .reserve(&ReserveRequest::new(vec![Line::new("A", 3)]))
        .await
        .unwrap_err();

    assert_eq!(repeat, first);
    assert!(other.is(codes::IDEMPOTENCY_CONFLICT), "{other}");
    assert_eq!(app.admin.sku("A").await.unwrap().held, 2);
}

#[tokio::test]
async fn refusals_are_problems_with_their_members() {
    let app = spawn_app().await;
    app.create_sku("A", 1).await;
    app.admin
        .put_sku("LTD", &PutSku::create(10).per_customer_limit(2))
        .await
        .unwrap();
    let launch = Utc::now() + Duration::days(1);
    app.admin
        .put_sku("SOON", &PutSku::create(10).sale_starts_at(launch))
        .await
        .unwrap();
    let shop = app.client(STOREFRONT);
    let reserve = |lines: Vec<Line>| ReserveRequest::new(lines).customer("c-1");

    let short = shop
        .reserve(&reserve(vec![Line::new("A", 3)]))
        .await
        .unwrap_err();
    let invalid = shop
        .reserve(&reserve(vec![Line::new("A", 0)]).ttl_seconds(7_200))
        .await
        .unwrap_err();
    let unknown = shop
        .reserve(&reserve(vec![Line::new("GHOST", 1)]))
        .await
        .unwrap_err();
    let over_limit = shop
        .reserve(&reserve(vec![Line::new("LTD", 3)]))
        .await
        .unwrap_err();
    let too_early = shop
        .reserve(&reserve(vec![Line::new("SOON", 1)]))
        .await
        .unwrap_err();
    let missing = shop.reservation("res_nope").await.unwrap_err();
    let forbidden = shop.put_sku("B", &PutSku::create(1)).await.unwrap_err();
    let unauthorized = app.client("wrong-key").sku("A").await.unwrap_err();

    assert_eq!(
        short.shortages(),
        [Shortage {
            sku: "A".into(),
            requested: 3,
            available: 1
        }]
    );
    assert!(matches!(short, Error::Problem { status: 409, .. }));
    let fields: Vec<_> = invalid
        .field_errors()
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, ["lines[0].qty", "ttl_seconds"], "{invalid}");
    assert_eq!(unknown.unknown_skus(), ["GHOST"]);
    let breach = &over_limit.limits()[0];
    assert_eq!(
        (breach.sku.as_str(), breach.limit, breach.requested),
        ("LTD", 2, 3)
    );
    let start = &too_early.sale_not_started()[0];
    assert_eq!(start.sku, "SOON");
    assert!((start.starts_at - launch).num_milliseconds().abs() <= 1);
    assert!(missing.is(codes::NOT_FOUND));
    assert_eq!(missing.status(), Some(404));
    assert!(forbidden.is(codes::FORBIDDEN));
    assert!(unauthorized.is(codes::UNAUTHORIZED));
}

#[tokio::test]
async fn ended_reservations_refuse_changes_with_their_own_codes() {
    let app = spawn_app().await;
    app.create_sku("A", 5).await;
    let shop = app.client(STOREFRONT);
    let one = ReserveRequest::new(vec![Line::new("A", 1)]);
    let released = shop.reserve(&one).await.unwrap();
    shop.release(&released.id).await.unwrap();
    let committed = shop.reserve(&one).await.unwrap();
    let order = shop
        .commit(&committed.id, &CommitRequest::default())
        .await
        .unwrap()
        .into_order();

    let commit_released = shop
        .commit(&released.id, &CommitRequest::default())
        .await
        .unwrap_err();
    let release_committed = shop.release(&committed.id).await.unwrap_err();
    let too_much_back = app
        .admin
        .return_order(
            &order.order_id,
            &ReturnRequest {
                return_id: "rma-9".into(),
                lines: vec![Line::new("A", 2)],
                restock: false,
            },
        )
        .await
        .unwrap_err();

    assert!(
        commit_released.is(codes::RESERVATION_RELEASED),
        "{commit_released}"
    );
    assert!(
        release_committed.is(codes::RESERVATION_COMMITTED),
        "{release_committed}"
    );
    let excess = &too_much_back.return_excess()[0];
    assert_eq!((excess.returnable, excess.requested), (1, 2));
}
