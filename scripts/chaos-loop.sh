#!/usr/bin/env bash
# Runs the combined fault test (Redis SIGKILLed and restarted from its AOF,
# the service SIGKILLed and restarted, Postgres stopped for 10 s, 100 clients
# retrying lost answers with their Idempotency-Keys) N times in a row and
# counts the runs that passed. Not part of CI: it takes about a minute a run.
#   scripts/chaos-loop.sh [runs, default 20]
# Each run's output is kept in target/chaos-loop/run-<n>.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
fi

runs=${1:-20}
[[ $runs =~ ^[0-9]+$ && $runs -gt 0 ]] || { echo "usage: $0 [runs]" >&2; exit 2; }

scripts/services.sh up test >/dev/null
pg_port=${STOCKHOLD_TEST_PG_PORT:-5434}
export STOCKHOLD_TEST_DATABASE_URL=postgres://stockhold@127.0.0.1:$pg_port/postgres

test=redis_service_and_postgres_fail_in_one_run
cargo test --test chaos --no-run >/dev/null 2>&1 || cargo test --test chaos --no-run
mkdir -p target/chaos-loop
passed=0
for ((n = 1; n <= runs; n++)); do
    log=target/chaos-loop/run-$n.log
    if cargo test --test chaos -- --exact "combined_faults::$test" --nocapture >"$log" 2>&1; then
        passed=$((passed + 1))
        verdict=passed
    else
        verdict="FAILED (see $log)"
    fi
    gaps=$(grep -oE "first reserve held [0-9.]+ s after [a-zA-Z ]+|longest stretch[^:]*: [0-9.]+ s" "$log" | tr '\n' ';' || true)
    echo "[chaos-loop] run $n/$runs: $verdict  $gaps"
done
echo "[chaos-loop] $passed of $runs runs passed"
[[ $passed -eq $runs ]]
