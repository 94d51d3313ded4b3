//! Seconds-long `stockhold-bench pools --smoke` and `events --smoke` runs
//! against the test Redis and Postgres: each measures the reserve script
//! without and with (allocations; events) and prints the table of both,
//! cleaning up after itself.

mod common;

use common::{run_bench, test_database_url, test_redis_url};
use std::time::Duration;

#[test]
fn pools_smoke_run_prints_both_figures_and_their_ratio() {
    smoke_run(
        "pools",
        "| basket | without allocations | with an allocation on every SKU | ratio \
         | ratio of each round, median |",
    );
}

#[test]
fn events_smoke_run_prints_both_figures_and_their_ratio() {
    smoke_run(
        "events",
        "| basket | without events | with events | ratio | ratio of each round, median |",
    );
}

fn smoke_run(command: &str, header: &str) {
    // Bounded: a smoke run takes seconds; give up (and fail) after 2 minutes.
    let stdout = run_bench(
        &format!("{command} smoke run"),
        &[
            command,
            "--smoke",
            "--redis-url",
            &test_redis_url(),
            "--database-url",
            &test_database_url(),
        ],
        Duration::from_secs(120),
    );
    assert!(stdout.contains(header), "{stdout}");
    for row in ["| 1 line |", "| 60 lines |"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row in:\n{stdout}"));
        // Two figures in µs and two ratios, all numbers above 0.
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        for cell in &cells[2..4] {
            let us: f64 = cell.trim_end_matches(" µs").parse().unwrap_or(-1.0);
            assert!(us > 0.0, "{line}");
        }
        for cell in &cells[4..6] {
            let ratio: f64 = cell.trim_end_matches('×').parse().unwrap_or(-1.0);
            assert!(ratio > 0.0, "{line}");
        }
    }
}
