//! The three systems measured side by side, behind one set of operations:
//! stockhold over HTTP, stockhold's engine called directly (the ceiling: the
//! Lua scripts on Redis, and for a commit the same Postgres write the HTTP
//! handler makes), and the classic SQL approach, as a client-driven
//! transaction or as one PL/pgSQL function call.

use crate::load::Recorder;
use sqlx::PgPool;
use std::fmt::Write as _;
use std::time::Instant;
use stockhold::domain::{CommitRequest, PatchRequest, ReservationId, ReserveRequest, Sku};
use stockhold::engine::EngineError;
use stockhold::service::Stock;

/// The SKUs the workloads draw from: `uniform` plain ones, then one hot one.
/// The HTTP tier's phases add a sold-out SKU, `SOLD_OUT`, kept out of these.
pub struct Catalogue {
    pub names: Vec<String>,
    pub skus: Vec<Sku>,
    pub uniform: usize,
    pub hot: usize,
}

/// The SKU with no stock that the sold-out phase asks for.
pub const SOLD_OUT: &str = "GONE-000000";

impl Catalogue {
    pub fn new(uniform: usize) -> Self {
        let mut names: Vec<String> = (0..uniform).map(|i| format!("BENCH-{i:06}")).collect();
        names.push("HOT-000000".to_owned());
        let skus = names
            .iter()
            .map(|n| Sku::parse(n).expect("bench SKU names are valid"))
            .collect();
        Catalogue {
            names,
            skus,
            uniform,
            hot: uniform,
        }
    }

    fn lines(&self, idx: &[usize]) -> Vec<(Sku, i64)> {
        idx.iter().map(|&i| (self.skus[i].clone(), 1)).collect()
    }

    /// Names in SKU order, the lock order of the SQL baseline.
    fn sorted_names(&self, idx: &[usize]) -> Vec<String> {
        let mut v: Vec<String> = idx.iter().map(|&i| self.names[i].clone()).collect();
        v.sort_unstable();
        v
    }

    fn json_lines(&self, idx: &[usize]) -> String {
        let mut out = String::with_capacity(idx.len() * 32 + 2);
        out.push('[');
        for (n, &i) in idx.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"sku":"{}","qty":1}}"#, self.names[i]);
        }
        out.push(']');
        out
    }
}

/// One system under test.
pub enum Target {
    /// stockhold over HTTP.
    Http {
        client: reqwest::Client,
        base: String,
        key: String,
    },
    /// stockhold's engine, no HTTP.
    Direct(Stock),
    /// The SQL baseline; `function`: one PL/pgSQL call per step.
    Sql { pool: PgPool, function: bool },
}

type Res = Result<(), String>;

fn engine_error(e: &EngineError) -> String {
    match e {
        EngineError::Rejected(r) => {
            let d = format!("{r:?}");
            format!(
                "rejected {}",
                d.split(['(', ' ', '{']).next().unwrap_or_default()
            )
        }
        EngineError::Unavailable(_) => "unavailable".into(),
        EngineError::OutcomeUnknown(_) => "outcome unknown".into(),
        EngineError::Internal(_) => "internal".into(),
    }
}

fn sql_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("P0001") => "short (rolled back)".into(),
            Some("40P01") => "deadlock".into(),
            Some(code) => format!("sql {code}"),
            None => "sql error".into(),
        },
        sqlx::Error::RowNotFound => "short (rolled back)".into(),
        sqlx::Error::PoolTimedOut => "pool timed out".into(),
        _ => "io".into(),
    }
}

async fn http_status(
    res: Result<reqwest::Response, reqwest::Error>,
) -> Result<(u16, Vec<u8>), String> {
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.bytes().await.map_err(|_| "io".to_owned())?;
            Ok((status, body.to_vec()))
        }
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(_) => Err("io".into()),
    }
}

/// Sends `req` with the API key and a JSON `body`: the status and body.
async fn send_json(
    req: reqwest::RequestBuilder,
    key: &str,
    body: impl Into<reqwest::Body>,
) -> Result<(u16, Vec<u8>), String> {
    http_status(
        req.bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await,
    )
    .await
}

/// The engine's reserve of `lines` under a new random id; that id.
async fn direct_reserve(
    stock: &Stock,
    lines: Vec<(Sku, i64)>,
    ttl: i64,
) -> Result<String, EngineError> {
    let req = ReserveRequest {
        lines,
        ttl_seconds: ttl,
        customer_id: None,
        channel: None,
        allow_partial: false,
    };
    let id = ReservationId::random(stock.engine.home_for(&req.lines));
    stock
        .engine
        .reserve(&id, &req)
        .await
        .map(|_| id.to_string())
}

fn expect(got: Result<(u16, Vec<u8>), String>, ok: &[u16]) -> Result<Vec<u8>, String> {
    let (status, body) = got?;
    if ok.contains(&status) {
        Ok(body)
    } else {
        Err(status.to_string())
    }
}

impl Target {
    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Http { .. } => "stockhold HTTP",
            Target::Direct(_) => "engine direct (ceiling)",
            Target::Sql {
                function: false, ..
            } => "SQL transaction",
            Target::Sql { function: true, .. } => "SQL PL/pgSQL function",
        }
    }

    /// A basket: reserve (and commit) over `idx`, or the SQL transaction
    /// that takes the stock and writes the ledger. True if all succeeded.
    pub async fn basket(
        &self,
        cat: &Catalogue,
        idx: &[usize],
        commit: bool,
        ttl: i64,
        rec: &mut Recorder,
    ) -> bool {
        if let Target::Sql { .. } = self {
            let t = Instant::now();
            let r = self.take(cat, idx, None).await;
            return rec.call("basket transaction", t, &r);
        }
        let Some(id) = self.open(cat, idx, ttl, rec).await else {
            return false;
        };
        !commit || self.checkout(&id, rec).await
    }

    /// Availability of `idx` (a product listing page).
    pub async fn read(&self, cat: &Catalogue, idx: &[usize], rec: &mut Recorder) -> bool {
        let t = Instant::now();
        let r: Res = match self {
            Target::Http { client, base, key } => {
                let mut url = format!("{base}/v1/availability?");
                for (n, &i) in idx.iter().enumerate() {
                    if n > 0 {
                        url.push('&');
                    }
                    url.push_str("sku=");
                    url.push_str(&cat.names[i]);
                }
                let got = http_status(client.get(url).bearer_auth(key).send().await).await;
                expect(got, &[200]).map(drop)
            }
            Target::Direct(stock) => {
                let skus: Vec<Sku> = idx.iter().map(|&i| cat.skus[i].clone()).collect();
                stock
                    .engine
                    .availability(&skus, None)
                    .await
                    .map(drop)
                    .map_err(|e| engine_error(&e))
            }
            Target::Sql { pool, .. } => {
                let names: Vec<String> = idx.iter().map(|&i| cat.names[i].clone()).collect();
                sqlx::query("SELECT sku, on_hand FROM bench_stock WHERE sku = ANY($1)")
                    .bind(&names)
                    .fetch_all(pool)
                    .await
                    .map(drop)
                    .map_err(|e| sql_error(&e))
            }
        };
        rec.call("availability", t, &r)
    }

    /// Holds `idx` in a new basket; its id.
    pub async fn open(
        &self,
        cat: &Catalogue,
        idx: &[usize],
        ttl: i64,
        rec: &mut Recorder,
    ) -> Option<String> {
        let t = Instant::now();
        let r: Result<String, String> = match self {
            Target::Http { client, base, key } => {
                let body = format!(r#"{{"lines":{},"ttl_seconds":{ttl}}}"#, cat.json_lines(idx));
                let got =
                    send_json(client.post(format!("{base}/v1/reservations")), key, body).await;
                expect(got, &[201]).and_then(|body| {
                    // Only the id is needed: a client reads what it uses.
                    #[derive(serde::Deserialize)]
                    struct Created {
                        id: String,
                    }
                    serde_json::from_slice::<Created>(&body)
                        .map(|c| c.id)
                        .map_err(|_| "201 without id".to_owned())
                })
            }
            Target::Direct(stock) => direct_reserve(stock, cat.lines(idx), ttl)
                .await
                .map_err(|e| engine_error(&e)),
            Target::Sql { .. } => {
                let cart = format!("cart-{}", uuid::Uuid::new_v4().simple());
                self.take(cat, idx, Some(&cart)).await.map(|()| cart)
            }
        };
        match r {
            Ok(id) => {
                rec.call("reserve", t, &Ok(()));
                Some(id)
            }
            Err(e) => {
                rec.call("reserve", t, &Err(e));
                None
            }
        }
    }

    /// `GET /healthz`: the HTTP tier's floor (HTTP only).
    pub async fn healthz(&self, rec: &mut Recorder) -> bool {
        let t = Instant::now();
        let r: Res = match self {
            Target::Http { client, base, .. } => {
                let got = http_status(client.get(format!("{base}/healthz")).send().await).await;
                expect(got, &[200]).map(drop)
            }
            _ => Err("not over HTTP".into()),
        };
        rec.call("healthz", t, &r)
    }

    /// A 1-line reserve of one unit of `sku`, left held: `201` expected,
    /// or with `sold_out` the `409 insufficient_stock` of a SKU that has
    /// none.
    pub async fn reserve_one(
        &self,
        sku: &Sku,
        sold_out: bool,
        ttl: i64,
        rec: &mut Recorder,
    ) -> bool {
        let t = Instant::now();
        let r: Res = match self {
            Target::Http { client, base, key } => {
                let body =
                    format!(r#"{{"lines":[{{"sku":"{sku}","qty":1}}],"ttl_seconds":{ttl}}}"#);
                let got =
                    send_json(client.post(format!("{base}/v1/reservations")), key, body).await;
                expect(got, if sold_out { &[409] } else { &[201] }).map(drop)
            }
            Target::Direct(stock) => {
                match (
                    direct_reserve(stock, vec![(sku.clone(), 1)], ttl).await,
                    sold_out,
                ) {
                    (Ok(_), false) | (Err(EngineError::Rejected(_)), true) => Ok(()),
                    (Ok(_), true) => Err("held a sold-out SKU".into()),
                    (Err(e), _) => Err(engine_error(&e)),
                }
            }
            Target::Sql { .. } => Err("not measured on SQL".into()),
        };
        rec.call(if sold_out { "sold out" } else { "reserve" }, t, &r)
    }

    /// Adds the lines `idx` (new to the basket) and restarts its TTL.
    pub async fn add(
        &self,
        cat: &Catalogue,
        id: &str,
        idx: &[usize],
        ttl: i64,
        rec: &mut Recorder,
    ) -> bool {
        let t = Instant::now();
        let r: Res = match self {
            Target::Http { client, base, key } => {
                let body = format!(r#"{{"lines":{},"ttl_seconds":{ttl}}}"#, cat.json_lines(idx));
                let url = format!("{base}/v1/reservations/{id}");
                let got = send_json(client.patch(url), key, body).await;
                expect(got, &[200]).map(drop)
            }
            Target::Direct(stock) => {
                let rid = ReservationId::parse(id).expect("our own id");
                let req = PatchRequest {
                    lines: cat.lines(idx),
                    ttl_seconds: Some(ttl),
                };
                stock
                    .engine
                    .patch(&rid, &req)
                    .await
                    .map(drop)
                    .map_err(|e| engine_error(&e))
            }
            Target::Sql { .. } => self.take(cat, idx, Some(id)).await,
        };
        rec.call("patch", t, &r)
    }

    /// Commits the basket: a sale in the ledger.
    pub async fn checkout(&self, id: &str, rec: &mut Recorder) -> bool {
        let t = Instant::now();
        let mut deferred = false;
        let r: Res = match self {
            Target::Http { client, base, key } => {
                let url = format!("{base}/v1/reservations/{id}/commit");
                let got = send_json(client.post(url), key, r#"{"payment_ref":"bench"}"#).await;
                deferred = matches!(got, Ok((202, _)));
                expect(got, &[201, 202]).map(drop)
            }
            Target::Direct(stock) => {
                let rid = ReservationId::parse(id).expect("our own id");
                let req = CommitRequest {
                    order_id: None,
                    payment_ref: Some("bench".into()),
                };
                match stock.commit(&rid, &req).await {
                    Ok(outcome) => {
                        deferred = !outcome.order.persisted;
                        Ok(())
                    }
                    Err(e) => Err(engine_error(&e)),
                }
            }
            Target::Sql { pool, function } => {
                if *function {
                    sqlx::query("SELECT bench_cart_checkout($1)")
                        .bind(id)
                        .execute(pool)
                        .await
                        .map(drop)
                        .map_err(|e| sql_error(&e))
                } else {
                    sql_checkout(pool, id).await.map_err(|e| sql_error(&e))
                }
            }
        };
        if deferred {
            rec.deferred += 1;
        }
        rec.call("commit", t, &r)
    }

    /// SQL: takes one unit of each SKU of `idx` in SKU order, all or
    /// nothing, and records the lines: in the ledger (a sale) or, with
    /// `cart`, as that cart's held lines.
    async fn take(&self, cat: &Catalogue, idx: &[usize], cart: Option<&str>) -> Res {
        let Target::Sql { pool, function } = self else {
            unreachable!("take is the SQL baseline's step")
        };
        let names = cat.sorted_names(idx);
        let qtys = vec![1_i64; names.len()];
        let r = if *function {
            let (call, reference) = match cart {
                Some(c) => ("SELECT bench_cart_add($1, $2, $3)", c.to_owned()),
                None => (
                    "SELECT bench_take($1, $2, $3)",
                    uuid::Uuid::new_v4().simple().to_string(),
                ),
            };
            sqlx::query(call)
                .bind(reference)
                .bind(&names)
                .bind(&qtys)
                .execute(pool)
                .await
                .map(drop)
        } else {
            sql_take(pool, &names, &qtys, cart).await
        };
        r.map_err(|e| sql_error(&e))
    }
}

/// The classic transaction: one guarded UPDATE per line in SKU order, rolled
/// back if any is short, then the ledger (or cart) rows.
async fn sql_take(
    pool: &PgPool,
    names: &[String],
    qtys: &[i64],
    cart: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for (sku, q) in names.iter().zip(qtys) {
        let done = sqlx::query(
            "UPDATE bench_stock SET on_hand = on_hand - $2 WHERE sku = $1 AND on_hand >= $2",
        )
        .bind(sku)
        .bind(q)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            tx.rollback().await?;
            return Err(sqlx::Error::RowNotFound);
        }
    }
    match cart {
        None => {
            sqlx::query(
                "INSERT INTO bench_ledger (basket, sku, qty)
                 SELECT $1, s, q FROM unnest($2::text[], $3::bigint[]) AS t(s, q)",
            )
            .bind(uuid::Uuid::new_v4().simple().to_string())
            .bind(names)
            .bind(qtys)
            .execute(&mut *tx)
            .await?;
        }
        Some(cart) => {
            sqlx::query(
                "INSERT INTO bench_cart_lines (cart, sku, qty)
                 SELECT $1, s, q FROM unnest($2::text[], $3::bigint[]) AS t(s, q)
                 ON CONFLICT (cart, sku) DO UPDATE SET qty = bench_cart_lines.qty + EXCLUDED.qty",
            )
            .bind(cart)
            .bind(names)
            .bind(qtys)
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await
}

async fn sql_checkout(pool: &PgPool, cart: &str) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO bench_ledger (basket, sku, qty)
         SELECT cart, sku, qty FROM bench_cart_lines WHERE cart = $1",
    )
    .bind(cart)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM bench_cart_lines WHERE cart = $1")
        .bind(cart)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// The SQL baseline's own tables and functions in the bench database, and
/// its stock rows (the same SKUs and quantities as stockhold's).
pub async fn sql_schema(pool: &PgPool, cat: &Catalogue, on_hand: i64) -> anyhow::Result<()> {
    for stmt in [
        "CREATE TABLE bench_stock (sku text PRIMARY KEY, on_hand bigint NOT NULL CHECK (on_hand >= 0))",
        "CREATE TABLE bench_ledger (id bigserial PRIMARY KEY, basket text NOT NULL, sku text NOT NULL,
             qty bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())",
        "CREATE TABLE bench_cart_lines (cart text NOT NULL, sku text NOT NULL, qty bigint NOT NULL,
             PRIMARY KEY (cart, sku))",
        r#"CREATE FUNCTION bench_take(p_ref text, p_skus text[], p_qtys bigint[]) RETURNS void
           LANGUAGE plpgsql AS $$
           BEGIN
             FOR i IN 1 .. coalesce(array_length(p_skus, 1), 0) LOOP
               UPDATE bench_stock SET on_hand = on_hand - p_qtys[i]
                WHERE sku = p_skus[i] AND on_hand >= p_qtys[i];
               IF NOT FOUND THEN
                 RAISE EXCEPTION 'insufficient stock for %', p_skus[i] USING ERRCODE = 'P0001';
               END IF;
             END LOOP;
             INSERT INTO bench_ledger (basket, sku, qty)
               SELECT p_ref, s, q FROM unnest(p_skus, p_qtys) AS t(s, q);
           END $$"#,
        r#"CREATE FUNCTION bench_cart_add(p_cart text, p_skus text[], p_qtys bigint[]) RETURNS void
           LANGUAGE plpgsql AS $$
           BEGIN
             FOR i IN 1 .. coalesce(array_length(p_skus, 1), 0) LOOP
               UPDATE bench_stock SET on_hand = on_hand - p_qtys[i]
                WHERE sku = p_skus[i] AND on_hand >= p_qtys[i];
               IF NOT FOUND THEN
                 RAISE EXCEPTION 'insufficient stock for %', p_skus[i] USING ERRCODE = 'P0001';
               END IF;
             END LOOP;
             INSERT INTO bench_cart_lines (cart, sku, qty)
               SELECT p_cart, s, q FROM unnest(p_skus, p_qtys) AS t(s, q)
               ON CONFLICT (cart, sku) DO UPDATE SET qty = bench_cart_lines.qty + EXCLUDED.qty;
           END $$"#,
        r#"CREATE FUNCTION bench_cart_checkout(p_cart text) RETURNS bigint
           LANGUAGE plpgsql AS $$
           DECLARE n bigint;
           BEGIN
             INSERT INTO bench_ledger (basket, sku, qty)
               SELECT cart, sku, qty FROM bench_cart_lines WHERE cart = p_cart;
             GET DIAGNOSTICS n = ROW_COUNT;
             DELETE FROM bench_cart_lines WHERE cart = p_cart;
             RETURN n;
           END $$"#,
    ] {
        sqlx::query(stmt).execute(pool).await?;
    }
    sqlx::query(
        "INSERT INTO bench_stock (sku, on_hand) SELECT s, $2 FROM unnest($1::text[]) AS t(s)",
    )
    .bind(&cat.names)
    .bind(on_hand)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE bench_stock").execute(pool).await?;
    Ok(())
}
