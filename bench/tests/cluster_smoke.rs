//! A seconds-long `stockhold-bench cluster --smoke` against a Redis Cluster,
//! when one is named by `STOCKHOLD_TEST_CLUSTER_URL` (seed URLs, comma
//! separated; `scripts/services.sh up cluster` starts one); skipped, with a
//! note, when it is not set. Postgres: `STOCKHOLD_TEST_DATABASE_URL`.

mod common;

use common::{run_bench, test_database_url};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn cluster_smoke_run_writes_its_report() {
    let Ok(seeds) = std::env::var("STOCKHOLD_TEST_CLUSTER_URL") else {
        eprintln!("STOCKHOLD_TEST_CLUSTER_URL not set: the cluster smoke run is skipped");
        return;
    };
    let out: PathBuf = std::env::temp_dir().join(format!(
        "stockhold-bench-cluster-smoke-{}",
        uuid::Uuid::new_v4().simple()
    ));
    run_bench(
        "cluster smoke run",
        &[
            "cluster",
            "--smoke",
            "--db-prefix",
            "test_bench_",
            "--out",
            &out.to_string_lossy(),
            "--redis-url",
            &seeds,
            "--database-url",
            &test_database_url(),
        ],
        Duration::from_secs(180),
    );
    let report = std::fs::read_to_string(out.join("cluster-latest.md")).expect("report written");
    let _ = std::fs::remove_dir_all(&out);
    for section in [
        "## Cluster layout",
        "## Results (over HTTP)",
        "### Cost of a cross-partition basket",
        "### Redis time per call, per master",
        "### Redis time per script",
        "## WAIT for a replica",
        "## Sizing",
    ] {
        assert!(report.contains(section), "no {section} in:\n{report}");
    }
    // Six phases (reserve, reserve + commit; 1, 2 and 4 partitions), each
    // did work without errors.
    let rows: Vec<Vec<&str>> = report
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c.len() == 12 && ["reserve", "reserve + commit"].contains(&c[1]))
        .collect();
    assert_eq!(rows.len(), 6, "6 phases in:\n{report}");
    for cells in rows {
        assert_ne!(cells[3], "0", "a phase did nothing: {cells:?}");
        assert_eq!(cells[7], "0", "errors in a phase: {cells:?}\n{report}");
    }
    // The hot SKU with 1 and 4 buckets, each with work and no errors.
    let hot: Vec<Vec<&str>> = report
        .lines()
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c.len() == 12 && c[1].starts_with("1-line hot SKU"))
        .collect();
    assert_eq!(
        hot.iter().map(|c| c[2]).collect::<Vec<_>>(),
        ["1", "4"],
        "hot-SKU phases in:\n{report}"
    );
    for cells in hot {
        assert_ne!(cells[3], "0", "a hot-SKU phase did nothing: {cells:?}");
        assert_eq!(
            cells[7], "0",
            "errors in a hot-SKU phase: {cells:?}\n{report}"
        );
    }
    assert!(report.contains("| script alone |"), "{report}");
    assert!(
        report.contains("| stage |") || report.contains(" stage |"),
        "{report}"
    );
}
