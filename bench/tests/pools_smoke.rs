//! A seconds-long `stockhold-bench pools --smoke` against the test Redis and
//! Postgres: it measures the reserve script with and without allocations
//! and prints the table of both, cleaning up after itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[test]
fn pools_smoke_run_prints_both_figures_and_their_ratio() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockhold-bench"))
        .args(["pools", "--smoke", "--redis-url"])
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

    // Bounded: a smoke run takes seconds; give up (and fail) after 2 minutes.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the benchmark") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the pools smoke run took more than 2 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("benchmark output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "pools smoke run failed ({status}):\n{stdout}\n{stderr}"
    );
    assert!(
        stdout
            .contains("| basket | without allocations | with an allocation on every SKU | ratio |"),
        "{stdout}"
    );
    for row in ["| 1 line |", "| 60 lines |"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no {row} row in:\n{stdout}"));
        // Two figures in µs and a ratio, all numbers.
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
