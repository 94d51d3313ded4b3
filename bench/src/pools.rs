//! `pools` and `events`: what channel allocations, or writing events, cost
//! the reserve script. The same SKUs are reserved one call at a time on the
//! call centre's channel, in rounds that alternate between without and with
//! (`pools`: no allocations at all, then an allocation and safety stock on
//! every SKU; `events`: an engine whose scripts write no events, then the
//! engine as it runs by default), and Redis's `INFO commandstats` gives the
//! script's time per call; per line it is that over the basket's lines.
//! One call at a time, so neither this process nor anything else competes
//! with Redis for a core while a script runs.

use crate::suite::{drop_deployment, evalsha_stats, fresh_deployment};
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use std::time::Instant;
use stockhold::domain::{PutSkuRequest, ReservationId, ReserveRequest, Setting, Sku};
use stockhold::service::Stock;
use stockhold::startup::connect_ready;

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// SKUs set up (each basket draws its lines from them).
    #[arg(long, default_value_t = 2_000)]
    pub skus: usize,
    /// Basket sizes measured.
    #[arg(long, value_delimiter = ',', default_value = "1,60")]
    pub lines: Vec<usize>,
    /// Reserve calls per basket size per round.
    #[arg(long, default_value_t = 2_000)]
    pub calls: usize,
    /// Rounds (each: without allocations, then with).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Redis (a fresh key prefix is used and removed).
    #[arg(long, default_value = "redis://127.0.0.1:6380/")]
    pub redis_url: String,
    /// Postgres server (a fresh database is created and dropped).
    #[arg(long, default_value = "postgres://stockhold@127.0.0.1:5433/postgres")]
    pub database_url: String,
    /// A seconds-long run at small sizes (the test suite's).
    #[arg(long)]
    pub smoke: bool,
}

/// What a run compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// No allocations against an allocation on every SKU.
    Allocations,
    /// Scripts writing no events against scripts writing them.
    Events,
}

impl Compare {
    fn without(self) -> &'static str {
        match self {
            Compare::Allocations => "without allocations",
            Compare::Events => "without events",
        }
    }

    fn with(self) -> &'static str {
        match self {
            Compare::Allocations => "with an allocation on every SKU",
            Compare::Events => "with events",
        }
    }
}

/// The channel reserved on, and given an allocation.
const CHANNEL: &str = "callcentre";
const ON_HAND: i64 = 1_000_000_000;

/// µs of Redis time per line of each round, by basket size: (without,
/// with allocations).
type Samples = Vec<(usize, Vec<f64>, Vec<f64>)>;

pub async fn run(mut opts: Options, compare: Compare) -> anyhow::Result<()> {
    if opts.smoke {
        opts.skus = opts.skus.min(200);
        opts.calls = opts.calls.min(20);
        opts.rounds = opts.rounds.min(1);
    }
    anyhow::ensure!(
        opts.lines
            .iter()
            .all(|&n| (1..=opts.skus.min(500)).contains(&n)),
        "--lines must be 1 to 500 and at most --skus"
    );
    let (admin, db, settings) =
        fresh_deployment(&opts.redis_url, &opts.database_url, "pools").await?;
    let result = async {
        let stock = connect_ready(&settings).await?;
        // The same deployment, through scripts that write no events.
        let mut quiet = settings.clone();
        quiet.events.enabled = false;
        let without_events = connect_ready(&quiet).await?;
        let skus: Vec<Sku> = (0..opts.skus)
            .map(|i| Sku::parse(&format!("POOL-{i:06}")).expect("a valid SKU"))
            .collect();
        let client = redis::Client::open(opts.redis_url.as_str())?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let started = Instant::now();
        set_pools(&stock, &skus, Some(ON_HAND), false).await?;
        eprintln!(
            "{}: {} SKUs set up in {:.1} s; {} rounds of {} calls per basket size {:?}",
            match compare {
                Compare::Allocations => "pools",
                Compare::Events => "events",
            },
            skus.len(),
            started.elapsed().as_secs_f64(),
            opts.rounds,
            opts.calls,
            opts.lines
        );
        let mut samples: Samples = opts.lines.iter().map(|&n| (n, vec![], vec![])).collect();
        let mut rng = SmallRng::seed_from_u64(15);
        for round in 0..opts.rounds {
            for with in [false, true] {
                let engine = match compare {
                    Compare::Allocations => {
                        set_pools(&stock, &skus, None, with).await?;
                        &stock
                    }
                    Compare::Events if with => &stock,
                    Compare::Events => &without_events,
                };
                for (lines, without_us, with_us) in samples.iter_mut() {
                    let _: () = redis::cmd("CONFIG")
                        .arg("RESETSTAT")
                        .query_async(&mut redis)
                        .await?;
                    let mut held = Vec::with_capacity(opts.calls);
                    for _ in 0..opts.calls {
                        let basket: Vec<(Sku, i64)> = sample(&mut rng, skus.len(), *lines)
                            .into_iter()
                            .map(|i| (skus[i].clone(), 1))
                            .collect();
                        held.push(reserve(engine, basket).await?);
                    }
                    let (calls, usec) = evalsha_stats(&mut redis)
                        .await?
                        .context("no EVALSHA in INFO commandstats")?;
                    anyhow::ensure!(calls as usize >= opts.calls, "{calls} script calls counted");
                    let per_line = usec / *lines as f64;
                    eprintln!(
                        "  round {}, {lines}-line baskets, {}: {usec:.1} µs per call, {per_line:.2} µs per line",
                        round + 1,
                        if with { compare.with() } else { compare.without() },
                    );
                    if with {
                        with_us.push(per_line);
                    } else {
                        without_us.push(per_line);
                    }
                    // Their units back, so the allocations may be removed.
                    for id in &held {
                        stock.engine.release(id).await?;
                    }
                }
            }
        }
        println!("{}", table(&samples, &opts, compare));
        anyhow::Ok(())
    }
    .await;
    let cleaned = drop_deployment(&admin, &db, &settings).await;
    result?;
    cleaned
}

/// Creates the SKUs (`on_hand`), or gives every one an allocation for the
/// call centre and a safety stock (`with`), or takes them away.
async fn set_pools(
    stock: &Stock,
    skus: &[Sku],
    on_hand: Option<i64>,
    with: bool,
) -> anyhow::Result<()> {
    let req = PutSkuRequest {
        on_hand,
        backorder_limit: None,
        per_customer_limit: Setting::Keep,
        sale_starts_at: Setting::Keep,
        buckets: None,
        safety_stock: on_hand.is_none().then_some(if with { 10 } else { 0 }),
        allocations: on_hand.is_none().then(|| match with {
            true => vec![(CHANNEL.to_owned(), ON_HAND / 2)],
            false => Vec::new(),
        }),
        low_stock: Setting::Keep,
    };
    for chunk in skus.chunks(64) {
        let puts = chunk.iter().map(|sku| stock.put_sku(sku, &req));
        for put in futures_util::future::join_all(puts).await {
            put?;
        }
    }
    Ok(())
}

async fn reserve(stock: &Stock, lines: Vec<(Sku, i64)>) -> anyhow::Result<ReservationId> {
    let req = ReserveRequest {
        lines,
        ttl_seconds: 3_600,
        customer_id: None,
        channel: Some(CHANNEL.to_owned()),
        allow_partial: false,
    };
    let id = ReservationId::random(stock.engine.home_for(&req.lines));
    stock.engine.reserve(&id, &req).await?;
    Ok(id)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn table(samples: &Samples, opts: &Options, compare: Compare) -> String {
    let what = match compare {
        Compare::Allocations => "an allocation and safety stock on every SKU",
        Compare::Events => "the scripts writing events",
    };
    let mut out = format!(
        "reserve script, Redis time per line (INFO commandstats, one call at a time, \
         {} SKUs, channel {CHANNEL}; median of {} rounds, each without then with \
         {what})\n\n\
         | basket | {} | {} | ratio | ratio of each round, median |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
        opts.skus,
        opts.rounds,
        compare.without(),
        compare.with()
    );
    for (lines, without, with) in samples {
        let (a, b) = (median(without), median(with));
        // Each round's pair was measured back to back: its ratio is the
        // least disturbed by the machine's drift between rounds.
        let paired: Vec<f64> = without.iter().zip(with).map(|(a, b)| b / a).collect();
        out.push_str(&format!(
            "| {lines} line{} | {a:.2} µs | {b:.2} µs | {:.2}× | {:.2}× |\n",
            if *lines == 1 { "" } else { "s" },
            b / a,
            median(&paired)
        ));
    }
    out
}
