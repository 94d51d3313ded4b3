//! The benchmark program is not part of the test run, but a seconds-long
//! smoke run of it is: `stockhold-bench suite --smoke` against the test
//! Redis and Postgres (scripts/test.sh starts them), checking that it
//! measured every system and wrote its table and plot.

mod common;

use common::{run_bench, test_database_url, test_redis_url};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn smoke_run_writes_a_results_table_and_a_plot() {
    let out: PathBuf = std::env::temp_dir().join(format!(
        "stockhold-bench-smoke-{}",
        uuid::Uuid::new_v4().simple()
    ));
    // Bounded: a smoke run takes seconds; give up (and fail) after 3 minutes.
    let stdout = run_bench(
        "smoke run",
        &[
            "suite",
            "--smoke",
            "--db-prefix",
            "test_bench_",
            "--out",
            &out.to_string_lossy(),
            "--redis-url",
            &test_redis_url(),
            "--database-url",
            &test_database_url(),
        ],
        Duration::from_secs(180),
    );

    let table = std::fs::read_to_string(out.join("latest.md")).expect("latest.md written");
    let plot = std::fs::read_to_string(out.join("latest.svg")).expect("latest.svg written");
    let _ = std::fs::remove_dir_all(&out);

    assert!(table.contains("| workload | system | rate |"), "{table}");
    for system in [
        "stockhold HTTP",
        "engine direct (ceiling)",
        "SQL transaction",
        "SQL PL/pgSQL function",
        "(half peak)",
    ] {
        assert!(table.contains(system), "no {system} row in:\n{table}");
    }
    for row in ["| r |", "| a |", "| b |", "| c |", "| d |"] {
        assert!(table.contains(row), "no {row} row in:\n{table}");
    }
    for section in [
        "## Machine",
        "## Machine state",
        "## Targets",
        "rustc",
        "Redis",
        "PostgreSQL",
    ] {
        assert!(table.contains(section), "no {section} in:\n{table}");
    }
    // Every phase did work without errors.
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c.len() == 11 && ["r", "a", "b", "c", "d"].contains(&c[1]))
        .collect();
    assert_eq!(rows.len(), 19, "19 phases in:\n{table}");
    for cells in rows {
        assert!(
            !cells[3].starts_with("0 "),
            "a phase did nothing: {cells:?}"
        );
        assert_eq!(cells[8], "0", "errors in a phase: {cells:?}\n{table}");
    }
    assert!(plot.starts_with("<svg") && plot.contains("<rect"), "{plot}");
    assert!(stdout.contains("| target | figure | met |"), "{stdout}");
}
