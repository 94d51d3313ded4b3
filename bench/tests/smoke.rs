//! The benchmark program is not part of the test run, but a seconds-long
//! smoke run of it is: `stockhold-bench suite --smoke` against the test
//! Redis and Postgres (scripts/test.sh starts them), checking that it
//! measured every system and wrote its table and plot.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn smoke_run_writes_a_results_table_and_a_plot() {
    let out: PathBuf = std::env::temp_dir().join(format!(
        "stockhold-bench-smoke-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockhold-bench"))
        .args(["suite", "--smoke", "--db-prefix", "test_bench_", "--out"])
        .arg(&out)
        .arg("--redis-url")
        .arg(env_or(
            "STOCKHOLD_TEST_REDIS_URL",
            "redis://127.0.0.1:6381/",
        ))
        .arg("--database-url")
        .arg(env_or(
            "STOCKHOLD_TEST_DATABASE_URL",
            "postgres://stockhold@127.0.0.1:5434/postgres",
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the benchmark program starts");

    // Bounded: a smoke run takes seconds; give up (and fail) after 3 minutes.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the benchmark") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the smoke run took more than 3 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("benchmark output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "smoke run failed ({status}):\n{stdout}\n{stderr}"
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
