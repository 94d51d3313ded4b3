//! The invariant checker, run once the load is over and the faults are
//! healed: waits until the outbox is drained and every hold has ended, then
//! compares what the clients were told, what Postgres recorded and the live
//! counts, and asks the service itself for drift.
//!
//! Per SKU, with `sold` = the units in Postgres `order_lines`:
//! - initial on_hand = live on_hand + sold (nothing sold twice, nothing lost);
//! - initial on_hand = persisted on_hand + sold, and the ledger's movements
//!   add up to the persisted on_hand;
//! - live on_hand, held and available are never negative.
//!
//! Per commit: a 201 is in Postgres as soon as the load ends; acknowledged
//! (201, 202, 200) is in Postgres once drained, with the basket held; refused is not; unknown is either in Postgres with its basket or
//! not at all (conservation covers its units). Postgres holds no order that
//! no client attempted, and no `repair` rows (a start-up repair would mean
//! the live counts had drifted) other than those of the passes after a
//! rebuild, which bring Redis up to sales that reached the ledger after the
//! rebuild read it (a commit persisted while Redis restarted without it).
//! No availability read under load was
//! negative. `POST /v1/admin/reconcile {}` finds nothing.

use super::load::{Catalogue, CommitOutcome, LoadOutcome, ADMIN, STOREFRONT};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long the outbox drain and the reaper get to catch up.
const SETTLE_WITHIN: Duration = Duration::from_secs(30);
/// Details shown per kind of anomaly; the count covers the rest.
const SHOWN: usize = 5;

/// What the checker found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Broken invariants, one line each.
    pub anomalies: Vec<String>,
    /// How long until drained and every hold ended.
    pub settled_in: Duration,
    /// Orders in Postgres.
    pub orders: usize,
    /// Units sold, per Postgres.
    pub units_sold: i64,
    /// Commits of unknown outcome that were made.
    pub unknown_made: usize,
    /// Commits of unknown outcome that were not.
    pub unknown_not_made: usize,
}

/// Live counts of one SKU, from the service.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Live {
    on_hand: i64,
    held: i64,
    available: i64,
}

/// Checks every invariant against the services at `services` (base URLs
/// of the live instances, all ready) and the ledger at `database_url`.
pub async fn check(
    services: &[String],
    database_url: &str,
    catalogue: &Catalogue,
    load: &LoadOutcome,
) -> Findings {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let db = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(database_url)
        .await
        .expect("the checker reaches Postgres");
    let mut findings = Findings::default();
    let mut anomalies = Anomalies::default();

    check_created_at_once(&db, load, &mut anomalies).await;
    for item in &load.negative_available {
        anomalies.add("negative availability under load", item.clone());
    }
    let started = Instant::now();
    let acked: Vec<&str> = load
        .commits
        .iter()
        .filter(|c| matches!(c.outcome, CommitOutcome::Acked(_)))
        .map(|c| c.order_id.as_str())
        .collect();
    loop {
        let waiting_for = match settled(&http, &services[0], &db, catalogue, &acked).await {
            Ok(()) => break,
            Err(why) => why,
        };
        if started.elapsed() >= SETTLE_WITHIN {
            anomalies.add(
                "not settled",
                format!("not drained within {SETTLE_WITHIN:?}: {waiting_for}"),
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    findings.settled_in = started.elapsed();

    check_counts(
        &http,
        services,
        &db,
        catalogue,
        &mut anomalies,
        &mut findings,
    )
    .await;
    check_commits(&db, load, &mut anomalies, &mut findings).await;
    for base in services {
        check_reconcile(&http, base, &mut anomalies).await;
    }
    findings.anomalies = anomalies.lines();
    db.close().await;
    findings
}

/// Anomalies grouped by kind, a few shown in detail.
#[derive(Default)]
struct Anomalies(BTreeMap<&'static str, Vec<String>>);

impl Anomalies {
    fn add(&mut self, kind: &'static str, detail: String) {
        self.0.entry(kind).or_default().push(detail);
    }

    fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (kind, details) in &self.0 {
            for d in details.iter().take(SHOWN) {
                out.push(format!("{kind}: {d}"));
            }
            if details.len() > SHOWN {
                out.push(format!("{kind}: … and {} more", details.len() - SHOWN));
            }
        }
        out
    }
}

/// A 201 means "in Postgres before the answer": no drain needed.
async fn check_created_at_once(db: &PgPool, load: &LoadOutcome, anomalies: &mut Anomalies) {
    let orders: Vec<String> = sqlx::query_scalar("SELECT order_id FROM orders")
        .fetch_all(db)
        .await
        .expect("read orders");
    let orders: HashSet<String> = orders.into_iter().collect();
    for c in &load.commits {
        if c.outcome == CommitOutcome::Acked(201) && !orders.contains(&c.order_id) {
            anomalies.add(
                "201 not in Postgres",
                format!(
                    "{} answered 201, not in Postgres when the load ended",
                    c.order_id
                ),
            );
        }
    }
}

/// Ok once every acknowledged order is in Postgres, every hold has ended,
/// and the persisted on_hand equals the live one (nothing left to drain).
async fn settled(
    http: &reqwest::Client,
    base: &str,
    db: &PgPool,
    catalogue: &Catalogue,
    acked: &[&str],
) -> Result<(), String> {
    let orders: Vec<String> = sqlx::query_scalar("SELECT order_id FROM orders")
        .fetch_all(db)
        .await
        .map_err(|e| format!("Postgres: {e}"))?;
    let orders: HashSet<String> = orders.into_iter().collect();
    let missing = acked.iter().filter(|o| !orders.contains(**o)).count();
    if missing > 0 {
        return Err(format!("{missing} acknowledged orders not in Postgres yet"));
    }
    let persisted = persisted_on_hand(db)
        .await
        .map_err(|e| format!("Postgres: {e}"))?;
    for sku in catalogue.names() {
        let live = live(http, base, sku).await?;
        if live.held != 0 {
            return Err(format!("{sku}: {} units still held", live.held));
        }
        if persisted.get(sku) != Some(&live.on_hand) {
            return Err(format!(
                "{sku}: persisted on_hand {:?}, live {}",
                persisted.get(sku),
                live.on_hand
            ));
        }
    }
    Ok(())
}

async fn live(http: &reqwest::Client, base: &str, sku: &str) -> Result<Live, String> {
    let res = http
        .get(format!("{base}/v1/skus/{sku}"))
        .bearer_auth(STOREFRONT)
        .send()
        .await
        .map_err(|e| format!("GET {sku}: {e}"))?;
    if res.status() != 200 {
        return Err(format!("GET {sku}: {}", res.status()));
    }
    let v: Value = res.json().await.map_err(|e| format!("GET {sku}: {e}"))?;
    let field = |f: &str| {
        v[f].as_i64()
            .ok_or_else(|| format!("GET {sku}: no {f} in {v}"))
    };
    Ok(Live {
        on_hand: field("on_hand")?,
        held: field("held")?,
        available: field("available")?,
    })
}

async fn persisted_on_hand(db: &PgPool) -> sqlx::Result<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as("SELECT sku, on_hand FROM sku_stock")
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Conservation per SKU, in Redis and in Postgres; the ledger adds up; no
/// count is negative; no repair was ever needed.
async fn check_counts(
    http: &reqwest::Client,
    services: &[String],
    db: &PgPool,
    catalogue: &Catalogue,
    anomalies: &mut Anomalies,
    findings: &mut Findings,
) {
    let persisted = persisted_on_hand(db).await.expect("read skus");
    let sold: HashMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT sku, sum(qty)::bigint FROM order_lines GROUP BY sku",
    )
    .fetch_all(db)
    .await
    .expect("read order_lines")
    .into_iter()
    .collect();
    let movements: HashMap<String, (i64, i64, i64)> = sqlx::query_as::<_, (String, i64, i64, i64)>(
        "SELECT sku, sum(delta)::bigint,
                    coalesce(-sum(delta) FILTER (WHERE kind = 'commit'), 0)::bigint,
                    count(*) FILTER (WHERE kind = 'repair' AND ref NOT LIKE 'after a rebuild:%')
             FROM stock_movements GROUP BY sku",
    )
    .fetch_all(db)
    .await
    .expect("read stock_movements")
    .into_iter()
    .map(|(sku, sum, committed, repairs)| (sku, (sum, committed, repairs)))
    .collect();
    for (sku, initial) in &catalogue.skus {
        let sold = sold.get(sku).copied().unwrap_or(0);
        findings.units_sold += sold;
        if sold > *initial {
            anomalies.add("oversold", format!("{sku}: {sold} units sold of {initial}"));
        }
        // Every live instance reads the same Redis; ask each anyway, so a
        // survivor that kept a stale view would show.
        for base in services {
            match live(http, base, sku).await {
                Ok(live) => {
                    if live.on_hand + sold != *initial {
                        anomalies.add(
                            "live conservation",
                            format!(
                                "{sku} via {base}: live on_hand {} + sold {sold} != initial {initial} (diff {})",
                                live.on_hand,
                                live.on_hand + sold - initial
                            ),
                        );
                    }
                    if live.on_hand < 0 || live.held < 0 || live.available < 0 {
                        anomalies.add("negative count", format!("{sku}: {live:?}"));
                    }
                }
                Err(e) => anomalies.add("live counts unreadable", e),
            }
        }
        let on_hand = persisted.get(sku).copied();
        if on_hand.map(|n| n + sold) != Some(*initial) {
            anomalies.add(
                "ledger conservation",
                format!("{sku}: persisted on_hand {on_hand:?} + sold {sold} != initial {initial}"),
            );
        }
        let (sum, committed, repairs) = movements.get(sku).copied().unwrap_or_default();
        if Some(sum) != on_hand || committed != sold {
            anomalies.add(
                "ledger movements",
                format!("{sku}: movements add up to {sum} (commits {committed}), persisted on_hand {on_hand:?}, order lines {sold}"),
            );
        }
        if repairs > 0 {
            let refs: Vec<(String, String)> = sqlx::query_as(
                "SELECT at::text, ref FROM stock_movements
                 WHERE sku = $1 AND kind = 'repair' AND ref NOT LIKE 'after a rebuild:%' ORDER BY id",
            )
            .bind(sku)
            .fetch_all(db)
            .await
            .unwrap_or_default();
            anomalies.add(
                "repaired drift",
                format!("{sku}: {repairs} repair rows (live counts had drifted from the ledger): {refs:?}"),
            );
        }
    }
}

/// What each client was told against what Postgres recorded.
async fn check_commits(
    db: &PgPool,
    load: &LoadOutcome,
    anomalies: &mut Anomalies,
    findings: &mut Findings,
) {
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT o.order_id, o.reservation_id, l.sku, l.qty
         FROM orders o JOIN order_lines l USING (order_id)",
    )
    .fetch_all(db)
    .await
    .expect("read orders");
    let order_count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(db)
        .await
        .expect("count orders");
    findings.orders = order_count as usize;
    let mut orders: HashMap<String, (String, Vec<(String, i64)>)> = HashMap::new();
    for (order_id, reservation_id, sku, qty) in rows {
        let entry = orders
            .entry(order_id)
            .or_insert_with(|| (reservation_id, Vec::new()));
        entry.1.push((sku, qty));
    }
    for (_, lines) in orders.values_mut() {
        lines.sort();
    }
    if orders.len() != findings.orders {
        anomalies.add(
            "orders without lines",
            format!("{} orders, {} with lines", findings.orders, orders.len()),
        );
    }

    let mut attempted = HashSet::new();
    for c in &load.commits {
        attempted.insert(c.order_id.as_str());
        let found = orders.get(&c.order_id);
        if let Some((reservation_id, lines)) = found {
            if reservation_id != &c.reservation_id || lines != &c.lines {
                anomalies.add(
                    "wrong order",
                    format!(
                        "{}: Postgres has {reservation_id} {lines:?}, the client held {} {:?}",
                        c.order_id, c.reservation_id, c.lines
                    ),
                );
            }
        }
        match (c.outcome, found.is_some()) {
            (CommitOutcome::Acked(status), false) => anomalies.add(
                "acknowledged commit lost",
                format!("{} answered {status}, not in Postgres", c.order_id),
            ),
            (CommitOutcome::Rejected(status), true) => anomalies.add(
                "refused commit made",
                format!(
                    "{} ({}) answered {status} after {} attempts, yet is in Postgres",
                    c.order_id, c.reservation_id, c.attempts
                ),
            ),
            (CommitOutcome::Unknown, true) => findings.unknown_made += 1,
            (CommitOutcome::Unknown, false) => findings.unknown_not_made += 1,
            _ => {}
        }
    }
    for order_id in orders.keys() {
        if !attempted.contains(order_id.as_str()) {
            anomalies.add("order nobody placed", format!("{order_id} is in Postgres"));
        }
    }
}

/// The service's own drift check finds nothing.
async fn check_reconcile(http: &reqwest::Client, base: &str, anomalies: &mut Anomalies) {
    let res = http
        .post(format!("{base}/v1/admin/reconcile"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await;
    let (status, body) = match res {
        Ok(res) => (res.status().as_u16(), res.text().await.unwrap_or_default()),
        Err(e) => return anomalies.add("reconcile failed", format!("{base}: {e}")),
    };
    let report: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status != 200 {
        anomalies.add("reconcile failed", format!("{base}: {status} {body}"));
    } else if report["drifted"] != json!([]) {
        anomalies.add("drift", format!("{base}: {}", report["drifted"]));
    }
}
