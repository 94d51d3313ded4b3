//! A seconds-long `stockhold-bench event-latency --smoke` against the test
//! Redis and Postgres: it measures how soon committed holds' events reach an
//! SSE client and a webhook receiver, stops the receiver under load, and
//! fails unless every event missed meanwhile arrives, in order per SKU.

mod common;

use common::{run_bench, test_database_url, test_redis_url};
use std::time::Duration;

#[test]
fn event_latency_smoke_run_delivers_every_event_after_an_outage() {
    // Bounded: a smoke run takes seconds; give up (and fail) after 3 minutes.
    let stdout = run_bench(
        "event-latency smoke run",
        &[
            "event-latency",
            "--smoke",
            "--redis-url",
            &test_redis_url(),
            "--database-url",
            &test_database_url(),
        ],
        Duration::from_secs(180),
    );
    for row in ["| an SSE client |", "| a webhook receiver |"] {
        assert!(stdout.contains(row), "no {row} row in:\n{stdout}");
    }
    assert!(
        stdout.contains(
            "| commits while it was down | delivered after | duplicates | out of order per SKU |"
        ),
        "{stdout}"
    );
}
