#!/usr/bin/env bash
# Run stockhold locally: start the dev Redis/Postgres, build, load the demo
# catalogue, then serve on http://127.0.0.1:8080 in the foreground.
# Extra arguments go to `stockhold serve`. Stop the services afterwards with
# `scripts/services.sh down dev`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"   # the binary reads configuration/ relative to the working directory

# rustup installs into ~/.cargo/bin, which non-login shells often lack.
if ! command -v cargo >/dev/null && [[ -x $HOME/.cargo/bin/cargo ]]; then
    PATH=$HOME/.cargo/bin:$PATH
fi
command -v cargo >/dev/null || { echo "[run] ERROR: cargo not found; install Rust from https://rustup.rs" >&2; exit 1; }

scripts/services.sh up dev >/dev/null

echo "[run] building (release)" >&2
cargo build --release

# Values already set in the environment win, so e.g. another port is one variable away.
export STOCKHOLD_PROFILE=${STOCKHOLD_PROFILE:-development}
export STOCKHOLD_REDIS__URL=${STOCKHOLD_REDIS__URL:-redis://127.0.0.1:${STOCKHOLD_DEV_REDIS_PORT:-6380}/}
export STOCKHOLD_DATABASE__URL=${STOCKHOLD_DATABASE__URL:-postgres://stockhold@127.0.0.1:${STOCKHOLD_DEV_PG_PORT:-5433}/stockhold}
export STOCKHOLD_APPLICATION__HOST=${STOCKHOLD_APPLICATION__HOST:-127.0.0.1}
export STOCKHOLD_APPLICATION__PORT=${STOCKHOLD_APPLICATION__PORT:-8080}

bin=${CARGO_TARGET_DIR:-target}/release/stockhold
echo "[run] loading demo data (idempotent)" >&2
"$bin" demo-data
echo "[run] serving on http://$STOCKHOLD_APPLICATION__HOST:$STOCKHOLD_APPLICATION__PORT (Ctrl-C to stop)" >&2
exec "$bin" serve "$@"
