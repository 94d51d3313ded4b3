//! The reference script of the first target: a plain all-or-nothing
//! reserve (`MGET` the counters, `DECRBY` each line, `HSET` the hold), timed
//! by Redis's `INFO commandstats` under the same two conditions as the
//! reserve script (one call at a time; `concurrency` calls in flight), so the
//! reserve script's µs per line has a yardstick measured on the same machine
//! in the same run.

use crate::load::{self, Plan};
use crate::suite::evalsha_stats;
use rand::rngs::SmallRng;
use rand::seq::index::sample;
use rand::SeedableRng;
use redis::aio::MultiplexedConnection;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SCRIPT: &str = include_str!("../lua/plain_reserve.lua");

/// The reference script's Redis time: `(calls, µs per call)` one call at a
/// time and under load.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reference {
    pub alone: Option<(u64, f64)>,
    pub loaded: Option<(u64, f64)>,
}

/// How much of the reference to run.
pub struct Sizes {
    pub skus: usize,
    pub lines: usize,
    pub alone_calls: u64,
    pub concurrency: usize,
    pub duration: Duration,
    pub loaded_calls: u64,
}

/// Sets up `sizes.skus` counters under `prefix`, times the script, and
/// removes every key it made (`prefix` must be the reference's own).
pub async fn measure(
    redis_url: &str,
    prefix: &str,
    sizes: &Sizes,
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<Reference> {
    let counters: Arc<Vec<String>> = Arc::new(
        (0..sizes.skus)
            .map(|i| format!("{prefix}:sku:{i}"))
            .collect(),
    );
    for chunk in counters.chunks(1000) {
        let mut mset = redis::cmd("MSET");
        for key in chunk {
            mset.arg(key).arg(super::suite::ON_HAND);
        }
        let _: () = mset.query_async(conn).await?;
    }
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(SCRIPT)
        .query_async(conn)
        .await?;
    let holds = Arc::new(AtomicU64::new(0));
    let phase = |title: &'static str, concurrency: usize, duration: Duration, calls: u64| {
        let (conn, counters, sha, holds) =
            (conn.clone(), counters.clone(), sha.clone(), holds.clone());
        let lines = sizes.lines;
        let prefix = prefix.to_owned();
        async move {
            let mut stats_conn = conn.clone();
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut stats_conn)
                .await?;
            let plan = Plan {
                concurrency,
                duration,
                max_units: calls,
                rate: None,
            };
            load::run(title, &plan, |i, pacer, mut rec| {
                let (mut conn, counters, sha, holds, prefix) = (
                    conn.clone(),
                    counters.clone(),
                    sha.clone(),
                    holds.clone(),
                    prefix.clone(),
                );
                async move {
                    let mut rng = SmallRng::seed_from_u64(500 + i as u64);
                    while let Some(start) = pacer.next().await {
                        let n = holds.fetch_add(1, Relaxed);
                        let mut call = redis::cmd("EVALSHA");
                        call.arg(&sha)
                            .arg(lines + 1)
                            .arg(format!("{prefix}:hold:{n}"));
                        let picked = sample(&mut rng, counters.len(), lines);
                        for i in picked.iter() {
                            call.arg(&counters[i]);
                        }
                        for _ in 0..lines {
                            call.arg(1);
                        }
                        let t = Instant::now();
                        let r = call
                            .query_async::<i64>(&mut conn)
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|taken| {
                                (taken == 1).then_some(()).ok_or_else(|| "short".to_owned())
                            });
                        if rec.call("plain reserve", t, &r) {
                            rec.unit_done(start, lines);
                        }
                    }
                    rec
                }
            })
            .await;
            evalsha_stats(&mut stats_conn).await
        }
    };
    let alone = phase(
        "reference script, one at a time",
        1,
        Duration::from_secs(60),
        sizes.alone_calls,
    )
    .await?;
    let loaded = phase(
        "reference script, under load",
        sizes.concurrency,
        sizes.duration,
        sizes.loaded_calls,
    )
    .await?;
    crate::delete_prefix(redis_url, prefix).await?;
    Ok(Reference { alone, loaded })
}
