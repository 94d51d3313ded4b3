//! The admin console as a person uses it: headless Chromium (Debian's
//! `chromium` and `chromium-driver`, which scripts/test.sh installs) driven
//! over WebDriver against a stockhold of the test's own (own database, own
//! Redis key prefix). Screenshots of each page are saved under
//! `target/tmp/console-screenshots/`; docs/console/ has the current ones.

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;

mod browser;

use browser::Browser;
use helpers::{body_of, spawn_app, ADMIN, STOREFRONT};
use serde_json::json;

#[tokio::test]
async fn an_admin_signs_in_finds_a_sku_adjusts_it_and_repairs_drift() {
    let app = spawn_app().await;
    for (sku, on_hand) in [("CONSOLE-MUG", 40), ("CONSOLE-TEE", 12), ("OTHER-CAP", 7)] {
        app.create_sku(sku, on_hand).await;
    }
    // More than a page of the list (25).
    for i in 1..=30 {
        app.create_sku(&format!("PAGE-{i:02}"), 1).await;
    }
    body_of(
        app.put_sku("CONSOLE-MUG", json!({ "low_stock": 5 })).await,
        200,
    )
    .await;
    let b = Browser::start().await;

    // The page and its files come with a strict policy.
    let page = app
        .client
        .get(format!("{}/admin", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");

    // Sign in: a wrong key and a storefront key are refused, readably.
    b.goto(&format!("{}/admin", app.address)).await;
    b.wait_text("h1", "stockhold admin").await;
    b.screenshot("signin").await;
    b.sign_in("not-a-key").await;
    b.wait_text(".problem", "401").await;
    let refused = b.text(".problem").await;
    assert!(!refused.contains("no longer accepts"), "{refused}");
    b.sign_in(STOREFRONT).await;
    b.wait_text(".problem", "needs a key with the admin role")
        .await;
    b.sign_in(ADMIN).await;

    // The overview: its figures, and events arriving live.
    b.wait_text("#t-skus .value", "33").await;
    b.wait_text("#live", "live").await;
    let held = app.hold(&[("CONSOLE-MUG", 2)]).await;
    body_of(app.commit(&held, json!({})).await, 201).await;
    let released = app.hold(&[("CONSOLE-TEE", 1)]).await;
    body_of(app.release(&released).await, 200).await;
    b.wait_text("ol.events", "hold.committed").await;
    b.wait_text("ol.events", &held).await;
    b.wait_text("ol.events", "hold.released").await;
    b.screenshot("overview").await;

    // Find a SKU by prefix: the others are not listed.
    b.click("a[data-nav=skus]").await;
    b.fill("#prefix", "CONSOLE").await;
    b.click("#search").await;
    b.wait_text("#sku-table", "CONSOLE-TEE").await;
    let table = b.text("#sku-table").await;
    assert!(table.contains("CONSOLE-MUG"), "{table}");
    assert!(!table.contains("OTHER-CAP"), "{table}");
    b.screenshot("skus").await;

    // Paging: 30 SKUs are two pages, forth and back; a new search starts
    // again at the first.
    b.fill("#prefix", "PAGE").await;
    b.click("#search").await;
    b.wait_text("#sku-table", "PAGE-25").await;
    b.click("#next-page").await;
    b.wait_text("#sku-table", "PAGE-30").await;
    assert!(!b.text("#sku-table").await.contains("PAGE-25"));
    b.click("#previous-page").await;
    b.wait_text("#sku-table", "PAGE-01").await;
    b.click("#next-page").await;
    b.wait_text("#sku-table", "PAGE-30").await;
    b.click("#search").await;
    b.wait_text("#sku-table", "PAGE-01").await;
    assert_eq!(
        b.eval("return document.getElementById('previous-page').disabled")
            .await,
        json!(true),
        "a new search starts at the first page"
    );
    b.fill("#prefix", "CONSOLE").await;
    b.click("#search").await;
    b.wait_text("#sku-table", "CONSOLE-MUG").await;
    b.click("#sku-table a[href='#/sku/CONSOLE-MUG']").await;

    // The SKU page: counts, then an adjustment seen without a reload.
    b.wait_text("#c-on_hand .value", "38").await;
    b.mark_page().await;
    b.fill("#a-delta", "25").await;
    b.fill("#a-reason", "receipt").await;
    // Submitted twice at once (a double click, Enter and a click): applied
    // once.
    b.eval("const f = document.getElementById('adjust'); f.requestSubmit(); f.requestSubmit(); return true")
        .await;
    b.wait_text("#c-on_hand .value", "63").await;
    b.wait_text("ol.events", "sku.adjusted").await;
    b.wait_text("#ledger", "adjustment").await;
    assert_eq!(app.counts("CONSOLE-MUG").await.0, 63);
    let ledger = body_of(app.ledger("CONSOLE-MUG", "").await, 200).await;
    let adjustments = ledger["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "adjustment")
        .count();
    assert_eq!(adjustments, 1, "{ledger}");

    // What another client does appears too: a hold from the storefront.
    let other = app.hold(&[("CONSOLE-MUG", 3)]).await;
    b.wait_text("#holds", &other).await;
    b.wait_text("#c-held .value", "3").await;
    b.wait_text("#c-available .value", "60").await;
    b.wait_text("ol.events", "hold.created").await;

    // An adjustment refused (it would take what is held), then, once stock
    // came in elsewhere, sent again as it stands: a fresh attempt, not the
    // refusal replayed.
    b.fill("#a-delta", "-70").await;
    b.click("#apply-adjustment").await;
    b.wait_text("#adjust .problem", "409").await;
    let receipt = json!({ "adjustment_id": "rcv-console", "delta": 20 });
    body_of(app.adjust("CONSOLE-MUG", receipt).await, 201).await;
    b.wait_text("#c-on_hand .value", "83").await;
    b.click("#apply-adjustment").await;
    b.wait_text("#c-on_hand .value", "13").await;
    b.wait_text("#adjust .ok", "Adjusted by -70").await;
    assert_eq!(app.counts("CONSOLE-MUG").await.0, 13);

    // A setting changed; a bad one refused with the API's own words.
    b.fill("#f-low_stock", "100").await;
    b.click("#save-settings").await;
    b.wait_text("#settings", "Saved: low_stock").await;
    b.wait_text("ol.events", "sku.low_stock").await;
    assert_eq!(app.sku("CONSOLE-MUG").await["low_stock"], 100);
    b.fill("#f-per_customer_limit", "0").await;
    b.click("#save-settings").await;
    b.wait_text("#settings .problem", "422").await;
    b.wait_text("#settings .problem", "per_customer_limit")
        .await;
    assert!(app.sku("CONSOLE-MUG").await["per_customer_limit"].is_null());
    b.fill("#f-per_customer_limit", "").await;
    // Channel allocations the form cannot read are refused before sending.
    b.fill("#f-allocations", "web=5, store").await;
    b.click("#save-settings").await;
    b.wait_text("#settings .problem", "“store” is not channel=units")
        .await;
    assert!(app.sku("CONSOLE-MUG").await["allocations"].is_null());
    b.fill("#f-allocations", "").await;
    b.wait_text("#ledger", "+25").await;
    b.screenshot("sku").await;
    assert!(b.same_page().await, "the SKU page was reloaded");

    // Reconcile: drift made behind the service's back, found by a dry run,
    // repaired after a confirmation.
    app.tamper("CONSOLE-TEE", "on_hand", 20).await;
    b.click("a[data-nav=reconcile]").await;
    b.click("#dry-run").await;
    b.wait_text("#drift", "CONSOLE-TEE").await;
    assert_eq!(
        app.counts("CONSOLE-TEE").await.0,
        20,
        "a dry run changed nothing"
    );
    b.screenshot("reconcile").await;
    b.click("#repair").await;
    b.wait_text("#confirm-repair", "CONSOLE-TEE").await;
    b.screenshot("reconcile-confirm").await;
    b.click("#confirm").await;
    b.wait_text("#result", "repaired").await;
    assert_eq!(app.counts("CONSOLE-TEE").await.0, 12);
    b.click("#dry-run").await;
    b.wait_text("#no-drift", "No drift").await;
    let check = body_of(app.reconcile(json!({})).await, 200).await;
    assert_eq!(check["drifted"], json!([]), "{check}");
    let ledger = body_of(app.ledger("CONSOLE-TEE", "").await, 200).await;
    assert_eq!(ledger["items"][0]["kind"], "repair", "{ledger}");

    // Signing out forgets the key.
    b.click("#sign-out").await;
    b.wait_text("h1", "stockhold admin").await;
    let key = b
        .eval("return sessionStorage.getItem('stockhold.admin_key')")
        .await;
    assert!(key.is_null(), "{key}");

    b.assert_clean_console().await;
    b.stop().await;
}
