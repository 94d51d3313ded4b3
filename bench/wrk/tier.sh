#!/usr/bin/env bash
# The HTTP tier as a new user measures it (issue 13): against a service
# started by scripts/run.sh on 127.0.0.1:8080 (development profile, dev
# keys), wrk with one thread, 64 connections, $SECONDS_EACH s per request:
# the floor (/healthz), a 1-SKU availability read, a 1-line reserve of a
# sold-out SKU (409) and of a deep one (201). Sets up WRK-DEEP (10^9 units)
# and WRK-GONE (0) first. Needs wrk (apt-get install -y wrk).
#
# To profile one of them, while it runs:
#   perf record -F 999 -g --call-graph dwarf -p $(pgrep -f 'stockhold serve') -- sleep 8
#   perf report --no-children
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
base=${BASE:-http://127.0.0.1:8080}
each=${SECONDS_EACH:-10}
admin=(-H "Authorization: Bearer dev-admin-key" -H "Content-Type: application/json")
curl -sf -X PUT "${admin[@]}" "$base/v1/skus/WRK-DEEP" -d '{"on_hand":1000000000}' >/dev/null
curl -sf -X PUT "${admin[@]}" "$base/v1/skus/WRK-GONE" -d '{"on_hand":0}' >/dev/null
run() {
    local name=$1; shift
    wrk -t1 -c64 -d"${each}s" --latency "$@" |
        awk -v n="$name" '/Requests\/sec/{r=$2} / 99%/{p=$2} END{printf "%-22s %10s/s  p99 %s\n", n, r, p}'
}
run "healthz (floor)" "$base/healthz"
run "availability" -s get.lua "$base/v1/availability?sku=WRK-DEEP"
SKU=WRK-GONE run "reserve, sold out" -s reserve.lua "$base/v1/reservations"
SKU=WRK-DEEP run "reserve, 1 line" -s reserve.lua "$base/v1/reservations"
