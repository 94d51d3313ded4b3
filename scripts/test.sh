#!/usr/bin/env bash
# Run the whole test suite against the disposable test-profile Redis (6381) and
# Postgres (5434). Extra arguments go to the test runner, e.g.
#   scripts/test.sh reservation      (a name filter, with nextest or cargo test)
# The services keep running afterwards; `scripts/services.sh down test` stops them.
# STOCKHOLD_TEST_REDIS_PORT / STOCKHOLD_TEST_PG_PORT choose other ports (see
# scripts/services.sh); STOCKHOLD_TEST_CLUSTER_PORT the first of the six ports
# of the test Redis Cluster (default 7011).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null || { echo "[test] ERROR: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }

scripts/services.sh up test >/dev/null
# Headless Chromium for the console's browser tests (tests/console).
scripts/services.sh up browser >/dev/null

redis_port=${STOCKHOLD_TEST_REDIS_PORT:-6381}
pg_port=${STOCKHOLD_TEST_PG_PORT:-5434}
export STOCKHOLD_TEST_REDIS_URL=redis://127.0.0.1:$redis_port/
export STOCKHOLD_TEST_DATABASE_URL=postgres://stockhold@127.0.0.1:$pg_port/postgres

# Tests create one database per test (test_*); drop any left over by an earlier,
# interrupted run. Bounded: connect timeout plus a statement timeout.
echo "[test] dropping leftover test_* databases" >&2
PGCONNECT_TIMEOUT=5 PGOPTIONS='-c statement_timeout=60s' \
    psql -X -q -h 127.0.0.1 -p "$pg_port" -U stockhold -d postgres -v ON_ERROR_STOP=1 <<'SQL'
select format('drop database if exists %I with (force)', datname)
from pg_database where datname like 'test\_%'
\gexec
SQL

# The test Redis is disposable too: every test uses its own key prefix, and
# keys of earlier runs only cost memory.
redis-cli -p "$redis_port" flushall >/dev/null

# The test Redis Cluster (3 masters, 3 replicas): the API suite's third run
# below, and the benchmark's cluster smoke run in the first.
cluster_port=${STOCKHOLD_TEST_CLUSTER_PORT:-7011}
STOCKHOLD_CLUSTER_PORT=$cluster_port scripts/services.sh up cluster >/dev/null
redis-cli --cluster call "127.0.0.1:$cluster_port" flushall --cluster-only-masters >/dev/null
seeds=$(for i in 0 1 2; do printf 'redis://127.0.0.1:%s/,' $((cluster_port + i)); done)
export STOCKHOLD_TEST_CLUSTER_URL=${seeds%,}

if cargo nextest --version >/dev/null 2>&1; then
    runner=(cargo nextest run --workspace --all-targets --no-fail-fast)
    api=(cargo nextest run --test api --no-fail-fast --no-tests=warn)
else
    runner=(cargo test --workspace --all-targets)
    api=(cargo test --test api)
fi
echo "[test] ${runner[*]} $*" >&2
status=0
"${runner[@]}" "$@" || status=$?

# The API suite again with the live state in 4 partitions (the service's
# default is 1): baskets then span partitions, and every promise of API.md
# must hold for them too.
echo "[test] STOCKHOLD_TEST_PARTITIONS=4 ${api[*]} $*" >&2
STOCKHOLD_TEST_PARTITIONS=4 "${api[@]}" "$@" || status=$?

# The API suite once more against a Redis Cluster (3 masters, 3 replicas,
# scripts/services.sh up cluster) with the live state in 16 partitions: the
# same promises on the Redis that production runs. Tests that restart, slow
# down or empty a Redis use one of their own, as in the runs above.
echo "[test] cluster on $cluster_port: STOCKHOLD_TEST_PARTITIONS=16 ${api[*]} $*" >&2
STOCKHOLD_TEST_REDIS_URL=$STOCKHOLD_TEST_CLUSTER_URL STOCKHOLD_TEST_REDIS_CLUSTER=1 \
    STOCKHOLD_TEST_PARTITIONS=16 "${api[@]}" "$@" || status=$?

echo "[test] test services left running; stop them with: scripts/services.sh down test;" \
    "STOCKHOLD_CLUSTER_PORT=$cluster_port scripts/services.sh down cluster" >&2
exit "$status"
