#!/usr/bin/env bash
# Runs schemathesis (from PyPI, into .data/venv) against a stockhold started
# here on the test services, over every endpoint of /openapi.json: fails on
# any 5xx and on any response that breaks the document.
#   scripts/schemathesis.sh [extra schemathesis args]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
fi

scripts/services.sh up test >/dev/null
redis_port=${STOCKHOLD_TEST_REDIS_PORT:-6381}
pg_port=${STOCKHOLD_TEST_PG_PORT:-5434}

venv=.data/venv
if [[ ! -x $venv/bin/schemathesis ]]; then
    echo "[schemathesis] installing schemathesis into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q schemathesis
fi

cargo build --quiet --bin stockhold
id=st$(date +%s)$$
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
psql -X -q -h 127.0.0.1 -p "$pg_port" -U stockhold -d postgres -c "create database test_$id"
log=.data/schemathesis-service.log
STOCKHOLD_PROFILE=development \
STOCKHOLD_APPLICATION__HOST=127.0.0.1 STOCKHOLD_APPLICATION__PORT=$port \
STOCKHOLD_REDIS__URL=redis://127.0.0.1:$redis_port/ STOCKHOLD_REDIS__KEY_PREFIX=$id \
STOCKHOLD_DATABASE__URL=postgres://stockhold@127.0.0.1:$pg_port/test_$id \
STOCKHOLD_TELEMETRY__FILTER=warn \
    "${CARGO_TARGET_DIR:-target}/debug/stockhold" serve >"$log" 2>&1 &
service=$!
cleanup() {
    kill "$service" 2>/dev/null || true
    wait "$service" 2>/dev/null || true
    psql -X -q -h 127.0.0.1 -p "$pg_port" -U stockhold -d postgres \
        -c "drop database if exists test_$id with (force)" || true
}
trap cleanup EXIT

base=http://127.0.0.1:$port
for _ in $(seq 1 100); do
    curl -fs "$base/readyz" >/dev/null && break
    sleep 0.2
done
curl -fs "$base/readyz" >/dev/null || { tail -20 "$log"; exit 1; }

# Some SKUs to find, so generated requests reach past "unknown SKU".
for sku in A B C 0 A-1; do
    curl -fs -X PUT "$base/v1/skus/$sku" -H 'Authorization: Bearer dev-admin-key' \
        -H 'Content-Type: application/json' -d '{"on_hand": 1000}' >/dev/null
done

"$venv/bin/schemathesis" run "$base/openapi.json" \
    --header 'Authorization: Bearer dev-admin-key' \
    --checks all \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --request-timeout 10 \
    "$@"
