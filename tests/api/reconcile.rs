//! Reconciliation (`POST /v1/admin/reconcile` and `stockhold reconcile`): the
//! live counts in Redis against what the ledger and the live holds say they
//! must be; drift reported by a dry run and set right by a repair, which is
//! recorded in the ledger and keeps live holds.

use crate::helpers::*;
use crate::validation::{check_refusal, Expect, Failures, Snapshot};
use reqwest::Method;
use serde_json::{json, Value};
use std::process::{Command, Output};
use stockhold::domain::{ReconcileMode, Sku, StreamId};
use stockhold::ledger::SkuRecord;

/// The JSON body of `res`, asserting its status first.
use crate::helpers::body_of;

/// The members of a JSON object, sorted.
fn keys_of(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// Reconciles with `body`, asserting 200 and the report's shape.
async fn reconcile_ok(app: &TestApp, body: Value) -> Value {
    let report = body_of(app.reconcile(body).await, 200).await;
    assert_eq!(
        keys_of(&report),
        ["checked", "drifted", "duration_ms", "repaired"],
        "{report}"
    );
    assert!(report["duration_ms"].is_u64(), "{report}");
    assert!(report["drifted"].is_array(), "{report}");
    report
}

/// One entry of `drifted` as API.md shows it.
fn drift(sku: &str, expected: (i64, i64), actual: (i64, i64)) -> Value {
    json!({
        "sku": sku,
        "expected": { "on_hand": expected.0, "held": expected.1 },
        "actual": { "on_hand": actual.0, "held": actual.1 },
    })
}

/// The rows of `sku`'s ledger, newest first, through the API.
async fn ledger_items(app: &TestApp, sku: &str) -> Vec<Value> {
    let page = body_of(app.ledger(sku, "").await, 200).await;
    page["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn on_a_quiet_system_reconcile_checks_every_sku_and_finds_no_drift() {
    // Arrange
    let app = spawn_app().await;
    for (sku, n) in [("A", 10), ("B", 0), ("C", 7)] {
        app.create_sku(sku, n).await;
    }

    // Act
    let report = reconcile_ok(&app, json!({ "repair": false })).await;
    let with_empty_body = reconcile_ok(&app, json!({})).await;

    // Assert
    assert_eq!(report["checked"], 3, "{report}");
    assert_eq!(report["drifted"], json!([]), "{report}");
    assert_eq!(report["repaired"], false, "{report}");
    assert_eq!(with_empty_body["checked"], 3, "{with_empty_body}");
    assert_eq!(with_empty_body["repaired"], false, "{with_empty_body}");
}

#[tokio::test]
async fn a_dry_run_reports_a_tampered_on_hand_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    app.hold(&[("A", 2)]).await;
    app.tamper("A", "on_hand", 17).await;
    let before = Snapshot::take(&app, &["A", "B"]).await;

    // Act
    let report = reconcile_ok(&app, json!({ "repair": false })).await;

    // Assert
    assert_eq!(report["checked"], 2, "{report}");
    assert_eq!(report["repaired"], false, "{report}");
    assert_eq!(
        report["drifted"],
        json!([drift("A", (10, 2), (17, 2))]),
        "{report}"
    );
    // (but for the drift.found event it tells)
    before.unchanged_but_events(&app).await.unwrap();
    assert_eq!(app.counts("A").await, (17, 2, 15), "still tampered");
}

#[tokio::test]
async fn a_repair_sets_a_tampered_on_hand_right_and_records_a_repair_row() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 5).await;
    let hold = app.hold(&[("A", 2)]).await;
    app.tamper("A", "on_hand", 17).await;

    // Act
    let report = reconcile_ok(&app, json!({ "repair": true })).await;

    // Assert
    assert_eq!(report["repaired"], true, "{report}");
    assert_eq!(
        report["drifted"],
        json!([drift("A", (10, 2), (17, 2))]),
        "{report}"
    );
    assert_eq!(app.counts("A").await, (10, 2, 8));
    assert_eq!(app.counts("B").await, (5, 0, 5), "B was not touched");
    let items = ledger_items(&app, "A").await;
    assert_eq!(items[0]["kind"], "repair", "{items:?}");
    assert_eq!(items[0]["on_hand_after"], 10, "{items:?}");
    assert_eq!(ledger_items(&app, "B").await.len(), 1, "no repair of B");
    let status = body_of(app.get_reservation(&hold).await, 200).await;
    assert_eq!(status["status"], "held", "the live hold is kept");
    let after = reconcile_ok(&app, json!({ "repair": false })).await;
    assert_eq!(after["drifted"], json!([]), "{after}");
}

#[tokio::test]
async fn a_corrupted_held_counter_is_reported_and_repaired_keeping_live_holds() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 10).await;
    let hold = app.hold(&[("B", 2)]).await;
    app.tamper("A", "held", 5).await;

    // Act
    let dry_run = reconcile_ok(&app, json!({})).await;
    let repair = reconcile_ok(&app, json!({ "repair": true })).await;

    // Assert
    assert_eq!(
        dry_run["drifted"],
        json!([drift("A", (10, 0), (10, 5))]),
        "{dry_run}"
    );
    assert_eq!(repair["drifted"], dry_run["drifted"], "{repair}");
    assert_eq!(app.counts("A").await, (10, 0, 10));
    assert_eq!(app.counts("B").await, (10, 2, 8), "B's hold still counts");
    let reservation = body_of(app.get_reservation(&hold).await, 200).await;
    assert_eq!(reservation["status"], "held");
    // The hold still works: it can be committed.
    let committed = app.commit(&hold, json!({ "order_id": "ord-1" })).await;
    body_of(committed, 201).await;
    assert_eq!(app.counts("B").await, (8, 0, 8));
    let after = reconcile_ok(&app, json!({})).await;
    assert_eq!(after["drifted"], json!([]), "{after}");
}

#[tokio::test]
async fn reconcile_of_named_skus_checks_only_those() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 10).await;
    app.tamper("B", "on_hand", 99).await;

    // Act
    let only_a = reconcile_ok(&app, json!({ "skus": ["A"] })).await;
    let only_b = reconcile_ok(&app, json!({ "skus": ["B"], "repair": false })).await;

    // Assert
    assert_eq!(only_a["checked"], 1, "{only_a}");
    assert_eq!(only_a["drifted"], json!([]), "{only_a}");
    assert_eq!(only_b["checked"], 1, "{only_b}");
    assert_eq!(
        only_b["drifted"],
        json!([drift("B", (10, 0), (99, 0))]),
        "{only_b}"
    );
}

#[tokio::test]
async fn with_outstanding_holds_commits_adjustments_and_returns_there_is_no_drift() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 10).await;
    app.create_sku("C", 10).await;
    app.commit_order("ord-1", &[("A", 3), ("B", 1)]).await;
    app.hold(&[("A", 2), ("C", 4)]).await;
    app.hold(&[("B", 1)]).await;
    let released = app.hold(&[("C", 1)]).await;
    body_of(app.release(&released).await, 200).await;
    body_of(
        app.adjust(
            "C",
            json!({ "adjustment_id": "rcv-1", "delta": 5, "reason": "receipt" }),
        )
        .await,
        201,
    )
    .await;
    body_of(
        app.return_order(
            "ord-1",
            json!({ "return_id": "rma-1", "lines": [ { "sku": "A", "qty": 1 } ], "restock": true }),
        )
        .await,
        201,
    )
    .await;
    let before = Snapshot::take(&app, &["A", "B", "C"]).await;

    // Act
    let report = reconcile_ok(&app, json!({ "repair": false })).await;
    let repair = reconcile_ok(&app, json!({ "repair": true })).await;

    // Assert
    assert_eq!(report["checked"], 3, "{report}");
    assert_eq!(report["drifted"], json!([]), "{report}");
    assert_eq!(repair["drifted"], json!([]), "{repair}");
    before.unchanged(&app).await.unwrap();
    assert_eq!(app.counts("A").await, (8, 2, 6));
    assert_eq!(app.counts("B").await, (9, 1, 8));
    assert_eq!(app.counts("C").await, (15, 4, 11));
}

#[tokio::test]
async fn malformed_reconcile_requests_are_422_and_change_nothing() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.tamper("A", "on_hand", 11).await;
    let before = Snapshot::take(&app, &["A"]).await;
    let cases: [(&str, Value, &'static [&'static str]); 6] = [
        (
            "repair as a string",
            json!({ "repair": "yes" }),
            &["repair"],
        ),
        ("skus as a string", json!({ "skus": "A" }), &["skus"]),
        ("a bad sku", json!({ "skus": ["bad sku"] }), &["skus[0]"]),
        (
            "a sku that is not a string",
            json!({ "skus": [7] }),
            &["skus[0]"],
        ),
        ("unknown field", json!({ "dry_run": true }), &["dry_run"]),
        (
            "every problem at once",
            json!({ "repair": "yes", "skus": ["A", "bad sku"], "dry_run": true }),
            &["repair", "skus[1]", "dry_run"],
        ),
    ];
    let mut failures = Failures::default();

    for (name, body, fields) in cases {
        // Act
        let res = app.reconcile(body).await;

        // Assert
        let outcome = match check_refusal(res, Expect::InvalidExactly(fields)).await {
            Ok(_) => before.unchanged(&app).await,
            Err(e) => Err(e),
        };
        failures.record(name, outcome);
    }
    failures.assert_none();
}

#[tokio::test]
async fn only_admin_may_reconcile() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.tamper("A", "on_hand", 11).await;
    let before = Snapshot::take(&app, &["A"]).await;

    for key in [STOREFRONT, CALLCENTRE] {
        // Act
        let res = app
            .request(
                Method::POST,
                "/v1/admin/reconcile",
                Some(key),
                Some(json!({ "repair": true })),
            )
            .await;

        // Assert
        assert_problem(res, 403, "forbidden").await;
    }
    before.unchanged(&app).await.unwrap();
}

/// Runs `stockhold reconcile <args>` against the app's Redis and Postgres.
async fn run_cli(app: &TestApp, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_stockhold"));
    command
        .arg("reconcile")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("STOCKHOLD_REDIS__URL", &app.settings.redis.url)
        .env(
            "STOCKHOLD_REDIS__CLUSTER",
            app.settings.redis.cluster.to_string(),
        )
        .env(
            "STOCKHOLD_REDIS__KEY_PREFIX",
            &app.settings.redis.key_prefix,
        )
        .env(
            "STOCKHOLD_REDIS__PARTITIONS",
            app.settings.redis.partitions.to_string(),
        )
        .env("STOCKHOLD_DATABASE__URL", &app.settings.database.url)
        .env("STOCKHOLD_TELEMETRY__FILTER", "warn")
        .env_remove("RUST_LOG");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the stockhold binary runs");
    assert!(
        output.status.success(),
        "stockhold reconcile {args:?} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The whitespace-separated fields of the stdout line that starts with `sku`.
fn row_of(stdout: &str, sku: &str) -> Option<Vec<String>> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|fields| fields.first().map(String::as_str) == Some(sku))
}

#[tokio::test]
async fn the_reconcile_command_reports_drift_and_repairs_it() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("TAMPERED-1", 10).await;
    app.create_sku("OTHER", 10).await;
    app.hold(&[("TAMPERED-1", 2)]).await;
    app.tamper("TAMPERED-1", "on_hand", 17).await;

    // Act
    let dry_run = run_cli(&app, &["--sku", "TAMPERED-1"]).await;
    let counts_after_dry_run = app.counts("TAMPERED-1").await;
    let repair = run_cli(&app, &["--sku", "TAMPERED-1", "--repair"]).await;
    let after = run_cli(&app, &[]).await;

    // Assert
    let stdout = String::from_utf8_lossy(&dry_run.stdout);
    assert!(stdout.contains("checked 1 SKUs"), "{stdout}");
    assert!(stdout.contains("1 drifted"), "{stdout}");
    assert!(!stdout.contains("repaired"), "{stdout}");
    assert_eq!(
        row_of(&stdout, "TAMPERED-1"),
        Some(vec![
            "TAMPERED-1".into(),
            "10".into(),
            "17".into(),
            "2".into(),
            "2".into()
        ]),
        "SKU, on_hand expected/actual, held expected/actual: {stdout}"
    );
    assert_eq!(
        counts_after_dry_run,
        (17, 2, 15),
        "a dry run changes nothing"
    );

    let stdout = String::from_utf8_lossy(&repair.stdout);
    assert!(stdout.contains("checked 1 SKUs"), "{stdout}");
    assert!(stdout.contains("repaired"), "{stdout}");
    assert!(stdout.contains("TAMPERED-1"), "{stdout}");
    assert_eq!(app.counts("TAMPERED-1").await, (10, 2, 8));
    let items = ledger_items(&app, "TAMPERED-1").await;
    assert_eq!(items[0]["kind"], "repair", "{items:?}");

    let stdout = String::from_utf8_lossy(&after.stdout);
    assert!(stdout.contains("checked 2 SKUs"), "{stdout}");
    assert!(stdout.contains("0 drifted"), "{stdout}");
}

#[tokio::test]
async fn a_sku_missing_from_redis_is_reported_and_restored_with_its_settings() {
    // Arrange
    let app = spawn_app().await;
    let body = json!({ "on_hand": 10, "backorder_limit": 3, "per_customer_limit": 2 });
    body_of(app.put_sku("A", body).await, 201).await;
    app.create_sku("B", 5).await;
    let view = app.sku("A").await;
    app.forget_sku("A").await;
    assert_problem(app.get_sku("A").await, 404, "not_found").await;

    // Act
    let dry_run = reconcile_ok(&app, json!({})).await;
    let repair = reconcile_ok(&app, json!({ "repair": true })).await;

    // Assert
    let drifted = dry_run["drifted"].as_array().unwrap();
    assert_eq!(drifted.len(), 1, "{dry_run}");
    assert_eq!(drifted[0]["sku"], "A", "{dry_run}");
    assert_eq!(
        drifted[0]["expected"],
        json!({ "on_hand": 10, "held": 0 }),
        "{dry_run}"
    );
    assert_ne!(drifted[0]["actual"]["on_hand"], 10, "{dry_run}");
    assert_eq!(repair["drifted"], dry_run["drifted"], "{repair}");
    assert_eq!(app.sku("A").await, view, "restored with its settings");
    let items = ledger_items(&app, "A").await;
    assert_eq!(
        items[0]["kind"], "repair",
        "API.md: each repair is a repair row in the ledger; ledger: {items:?}"
    );
}

#[tokio::test]
async fn a_repair_under_load_finds_no_drift_and_sells_no_unit_twice() {
    // Arrange
    let app = spawn_app().await;
    app.create_sku("A", 30).await;
    app.create_sku("B", 30).await;
    let buyers = (0..40).map(|i| {
        let app = &app;
        async move {
            let res = app
                .reserve(json!({ "lines": [ { "sku": "A", "qty": 1 }, { "sku": "B", "qty": 1 } ] }))
                .await;
            if res.status() != 201 {
                return 0;
            }
            let id = res.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            if i % 4 == 0 {
                // Some baskets stay held.
                return 0;
            }
            let res = app
                .commit(&id, json!({ "order_id": format!("ord-{i}") }))
                .await;
            assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
            1
        }
    });
    let repairs = (0..5).map(|_| reconcile_ok(&app, json!({ "repair": true })));

    // Act
    let (sold, reports) = tokio::join!(
        futures_util::future::join_all(buyers),
        futures_util::future::join_all(repairs)
    );

    // Assert
    for report in &reports {
        assert_eq!(report["drifted"], json!([]), "{report}");
    }
    let sold: i64 = sold.iter().sum();
    let (on_hand, held, _) = app.counts("A").await;
    assert_eq!(on_hand + sold, 30, "sold {sold}, on_hand {on_hand}");
    assert_eq!(app.counts("B").await.0 + sold, 30);
    assert_eq!(held + sold, 30, "every unit is held or sold");
    let after = reconcile_ok(&app, json!({})).await;
    assert_eq!(after["drifted"], json!([]), "{after}");
    let repairs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM stock_movements WHERE kind = 'repair'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(repairs, 0, "nothing needed repair");
}

#[tokio::test]
async fn holds_made_changed_or_ended_after_the_live_holds_were_read_count_as_they_are() {
    // Arrange: a reconciliation reads what each partition's live holds
    // hold before it compares batches of SKUs; holds made, changed or
    // ended in between must count as they are when the batch runs.
    let app = spawn_app().await;
    app.create_sku("A", 10).await;
    app.create_sku("B", 10).await;
    let first = app.hold(&[("A", 1)]).await;
    let gone = app.hold(&[("A", 4)]).await;
    let engine = &app.stock.engine;
    let partition = |sku: &str| engine.keys().of_sku(&Sku::parse(sku).unwrap());
    let (pa, pb) = (partition("A"), partition("B"));
    let index_a = engine.hold_index(pa).await.unwrap();
    let index_b = engine.hold_index(pb).await.unwrap();

    // Act: a new hold of A, one released, and the first hold given a line
    // of B.
    app.hold(&[("A", 2)]).await;
    let res = app.release(&gone).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let res = app
        .patch_reservation(&first, json!({ "lines": [ { "sku": "B", "qty": 3 } ] }))
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // Assert: each batch, with the index read before, finds no drift.
    for (sku, p, index) in [("A", pa, &index_a), ("B", pb, &index_b)] {
        let up_to = engine
            .outbox_after(p, StreamId::default(), 10_000)
            .await
            .unwrap()
            .last()
            .map(|e| e.id)
            .unwrap_or_default();
        let record = SkuRecord::plain(sku, 10);
        let drift = engine
            .reconcile_batch(p, ReconcileMode::Check, up_to, "", index, &[(&record, 10)])
            .await
            .unwrap();
        let (drift, changed) = drift.expect("the watch is on");
        assert_eq!(drift, vec![], "{sku}");
        assert!(changed >= 1, "{sku}: the holds changed since were noted");
    }
    assert_eq!(app.counts("A").await, (10, 3, 7));
    assert_eq!(app.counts("B").await, (10, 3, 7));

    // A batch whose watch was abandoned (here: ended) refuses rather than
    // miss holds changed while nobody noted them.
    engine.end_watch(pa, &index_a).await.unwrap();
    let record = SkuRecord::plain("A", 10);
    let lapsed = engine
        .reconcile_batch(
            pa,
            ReconcileMode::Check,
            StreamId::default(),
            "",
            &index_a,
            &[(&record, 10)],
        )
        .await
        .unwrap();
    assert_eq!(lapsed, None);
    let report = reconcile_ok(&app, json!({})).await;
    assert_eq!(report["drifted"], json!([]), "{report}");
}
