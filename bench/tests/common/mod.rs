//! Running `stockhold-bench` from a test: bounded in time, its output kept.
// Each test binary uses some of these.
#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The test Redis and Postgres (scripts/test.sh starts them).
pub fn test_redis_url() -> String {
    env_or("STOCKHOLD_TEST_REDIS_URL", "redis://127.0.0.1:6381/")
}

pub fn test_database_url() -> String {
    env_or(
        "STOCKHOLD_TEST_DATABASE_URL",
        "postgres://stockhold@127.0.0.1:5434/postgres",
    )
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Runs `stockhold-bench args…`, killing it (and failing) after `limit`;
/// asserts it succeeded and returns its standard output.
pub fn run_bench(what: &str, args: &[&str], limit: Duration) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stockhold-bench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the benchmark program starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the benchmark") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the {what} took more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().expect("benchmark output");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "the {what} failed ({status}):\n{stdout}\n{stderr}"
    );
    stdout
}
