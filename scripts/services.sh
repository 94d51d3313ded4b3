#!/usr/bin/env bash
# Local Redis + Postgres for stockhold, without Docker.
#
#   scripts/services.sh up   dev|test     start (or reuse) both servers, print the URLs
#   scripts/services.sh down dev|test     stop the servers this script started
#   scripts/services.sh up   cluster      a Redis Cluster on loopback: 3 masters and
#                                         3 replicas, AOF on, ports 7001-7006
#                                         (STOCKHOLD_CLUSTER_PORT moves the first);
#                                         data in .data/cluster; no Postgres
#   scripts/services.sh down cluster
#   scripts/services.sh up   browser      install Debian's chromium and chromium-driver
#                                         if missing (the console's browser tests,
#                                         tests/console, start their own chromedriver)
#
#   profile  data dir     Redis            Postgres
#   dev      .data/dev    127.0.0.1:6380   127.0.0.1:5433  (database "stockhold")
#   test     .data/test   127.0.0.1:6381   127.0.0.1:5434  (tests create their own databases)
#
# STOCKHOLD_TEST_REDIS_PORT and STOCKHOLD_TEST_PG_PORT move the test services
# elsewhere (data in .data/test-<redis port>), so two checkouts can run their
# suites at once without one flushing the other's Redis; STOCKHOLD_DEV_REDIS_PORT
# and STOCKHOLD_DEV_PG_PORT do the same for the dev services (scripts/run.sh
# follows them).
#
# Progress goes to stderr; `up` prints `export REDIS_URL=... DATABASE_URL=...` lines on
# stdout, so `eval "$(scripts/services.sh up dev)"` works. Sourcing the script
# (`. scripts/services.sh up dev`) exports them into the current shell.
# Override the Postgres binaries with PG_BIN=/path/to/bin if needed.

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: run in a child bash so `set -e` / `exit` cannot kill the caller's shell.
    _stockhold_env=$(bash "${BASH_SOURCE[0]}" "$@") || return
    eval "$_stockhold_env"
    unset _stockhold_env
    return 0
fi

set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { die "usage: $0 up|down dev|test|cluster|browser"; }
[[ $# -eq 2 ]] || usage
action=$1 profile=$2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $profile in
    cluster) redis_port=${STOCKHOLD_CLUSTER_PORT:-7001} pg_port=0 db='' ;;
    browser) redis_port=0 pg_port=0 db='' ;;
    dev)  redis_port=${STOCKHOLD_DEV_REDIS_PORT:-6380} pg_port=${STOCKHOLD_DEV_PG_PORT:-5433} db=stockhold ;;
    test) redis_port=${STOCKHOLD_TEST_REDIS_PORT:-6381} pg_port=${STOCKHOLD_TEST_PG_PORT:-5434} db=postgres ;;
    *) usage ;;
esac
datadir=$ROOT/.data/$profile
[[ $profile == test && $redis_port != 6381 ]] && datadir=$ROOT/.data/test-$redis_port
[[ $profile == dev && $redis_port != 6380 ]] && datadir=$ROOT/.data/dev-$redis_port
redis_dir=$datadir/redis

# Postgres refuses to run as root, so as root every Postgres command runs as the
# `postgres` system user, and the Postgres directories must belong to it.
is_root() { [[ $(id -u) -eq 0 ]]; }
as_pg() {
    # cd / first: initdb/pg_ctl fail if they cannot read the current directory (e.g. /root).
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# ---------------------------------------------------------------- Postgres setup
find_pg_bin() {
    if [[ -z ${PG_BIN:-} ]]; then
        # Debian/Ubuntu keep the server binaries off PATH; take the newest installed major.
        PG_BIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n1)
        [[ -n $PG_BIN ]] || PG_BIN=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
    fi
    pg_isready_bin=$PG_BIN/pg_isready
    [[ -x $pg_isready_bin ]] || pg_isready_bin=pg_isready
}
find_pg_bin
export PGCONNECT_TIMEOUT=5   # keep every psql / pg_isready call bounded

# apt-get install -y <packages>, as root or through sudo.
apt_install() {
    command -v apt-get >/dev/null || die "$* not installed and apt-get is unavailable; install it yourself"
    local sudo=()
    if ! is_root; then
        command -v sudo >/dev/null || die "$* not installed; run as root or install it: apt-get install -y $*"
        sudo=(sudo)
    fi
    log "installing $* with apt-get"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# The Postgres server binaries (initdb, pg_ctl) and psql; the Debian package
# also creates the `postgres` user that runs the server when we are root.
ensure_pg_installed() {
    if [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] && command -v psql >/dev/null &&
        { ! is_root || id postgres >/dev/null 2>&1; }; then
        return 0
    fi
    apt_install postgresql
    PG_BIN='' find_pg_bin
    [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] ||
        die "installed postgresql, but its server binaries are not under /usr/lib/postgresql (set PG_BIN)"
}

# Where the Postgres files live. Normally <datadir>/pg (data) and <datadir>/pg-run
# (Unix socket + log). As root, the postgres user must be able to traverse every
# parent of the repo; if it cannot (repo under /root, say), use a directory under
# /tmp named after the profile and a hash of the repo path instead (note: a reboot
# may clear /tmp, and with it that profile's database).
# Set by pg_paths once Postgres is installed (as root the files must be
# reachable by the postgres user, which the package creates).
pg_paths() {
    pg_base=$datadir
    if is_root; then
        id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (apt-get install -y postgresql)"
        mkdir -p "$datadir"
        if ! runuser -u postgres -- test -x "$datadir" 2>/dev/null; then
            pg_base=/tmp/stockhold-pg-$profile-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
            log "user postgres cannot reach $datadir; keeping Postgres files in $pg_base"
        fi
    fi
    pg_data=$pg_base/pg
    pg_run=$pg_base/pg-run
    pg_log=$pg_run/postgres.log
    # Unix socket paths are limited to ~107 bytes; fall back to /tmp for deep repo paths.
    pg_sock=$pg_run
    (( ${#pg_sock} <= 80 )) || pg_sock=/tmp
}

pg_ready() { "$pg_isready_bin" -q -h 127.0.0.1 -p "$pg_port" -U stockhold -d postgres; }
redis_ping() {
    # Plain bash TCP, so it works before redis-cli is installed.
    local reply=''
    { exec 3<>"/dev/tcp/127.0.0.1/$redis_port"; } 2>/dev/null || return 1
    printf 'PING\r\n' >&3
    read -r -t 1 reply <&3 2>/dev/null || true
    exec 3>&-
    [[ $reply == +PONG* ]]
}

# wait_for <what> <logfile> <command...>: poll for up to 30 s, then show the log tail.
wait_for() {
    local what=$1 logfile=$2 deadline=$((SECONDS + 30))
    shift 2
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log "$what did not come up within 30 s; last lines of $logfile:"
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.5
    done
}

ensure_redis_installed() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
    apt_install redis-server
    command -v redis-server >/dev/null || die "installed redis-server, but it is still not on PATH"
}

redis_up() {
    if redis_ping; then
        log "Redis already answers on 127.0.0.1:$redis_port; reusing it"
        return 0
    fi
    ensure_redis_installed
    mkdir -p "$redis_dir"
    log "starting Redis on 127.0.0.1:$redis_port (data in $redis_dir)"
    # AOF with fsync every second: the reservations live in Redis, so keep them across restarts.
    # Every reserve appends ~2 KB to the AOF while the data grows far less, so
    # with Redis's default (rewrite at 64 MB, then each time the file doubles)
    # a busy minute forks a rewrite every ~15 s, and the child takes a core:
    # rewrite from 1 GB instead.
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$redis_dir" \
        --appendonly yes --appendfsync everysec --save "" \
        --auto-aof-rewrite-min-size 1gb \
        --daemonize yes --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
    wait_for Redis "$redis_dir/redis.log" redis_ping
}

redis_down() {
    local pid i
    pid=$(cat "$redis_dir/redis.pid" 2>/dev/null || true)
    # Only stop a server we started (a docker-compose Redis may own the dev port).
    if [[ -z $pid ]] || [[ $(ps -p "$pid" -o comm= 2>/dev/null) != redis-server* ]]; then
        log "no Redis started by this script on port $redis_port"
        return 0
    fi
    log "stopping Redis on port $redis_port (pid $pid)"
    # Plain SHUTDOWN flushes the AOF; `shutdown nosave` would be wrong here.
    redis-cli -h 127.0.0.1 -p "$redis_port" shutdown >/dev/null 2>&1 || true
    for ((i = 0; i < 60; i++)); do
        ps -p "$pid" >/dev/null 2>&1 || return 0
        sleep 0.5
    done
    die "Redis (pid $pid) did not stop within 30 s"
}

pg_up() {
    local rc=0
    ensure_pg_installed
    pg_paths
    pg_ready || rc=$?
    # pg_isready: 0 = accepting, 1 = starting up / shutting down, 2 = nothing there.
    if [[ $rc -eq 0 || $rc -eq 1 ]]; then
        log "Postgres already listening on 127.0.0.1:$pg_port; reusing it"
    elif [[ $rc -ne 2 ]]; then
        die "pg_isready failed (exit $rc); is the PostgreSQL client installed?"
    else
        [[ -x $PG_BIN/initdb && -x $PG_BIN/pg_ctl ]] ||
            die "Postgres server binaries not found in '$PG_BIN' (apt-get install -y postgresql, or set PG_BIN)"
        mkdir -p "$pg_data" "$pg_run"
        is_root && chown postgres: "$pg_data" "$pg_run"
        chmod 700 "$pg_data"
        if [[ ! -f $pg_data/PG_VERSION ]]; then
            log "initialising Postgres cluster in $pg_data"
            # --locale=C: works on machines without generated locales, same sort order everywhere.
            as_pg "$PG_BIN/initdb" -D "$pg_data" -U stockhold --auth=trust -E UTF8 --locale=C >"$pg_run/initdb.log" 2>&1 ||
                { tail -n 20 "$pg_run/initdb.log" >&2; die "initdb failed"; }
        fi
        local opts="-p $pg_port -k $pg_sock -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB"
        # The ledger is write-heavy (a 60-line sale is 121 rows): with the
        # default 1 GB of WAL between checkpoints, a busy minute checkpoints
        # every 30-60 s, and every page touched first after a checkpoint goes
        # to the WAL whole.
        opts+=" -c max_wal_size=8GB -c checkpoint_timeout=15min"
        if [[ $profile == test ]]; then
            # Test data is disposable: trade durability for speed.
            opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        else
            opts+=" -c fsync=on"
        fi
        log "starting Postgres on 127.0.0.1:$pg_port (data in $pg_data, log $pg_log)"
        as_pg "$PG_BIN/pg_ctl" -D "$pg_data" -l "$pg_log" -o "$opts" -w -t 30 start >/dev/null ||
            { tail -n 20 "$pg_log" >&2 2>/dev/null; die "Postgres failed to start"; }
    fi
    wait_for Postgres "$pg_log" pg_ready
    if [[ $db != postgres ]]; then
        local psql=(psql -X -q -h 127.0.0.1 -p "$pg_port" -U stockhold -d postgres -v ON_ERROR_STOP=1)
        if [[ -z $("${psql[@]}" -tAc "select 1 from pg_database where datname = '$db'") ]]; then
            log "creating database $db"
            "${psql[@]}" -c "create database $db"
        fi
    fi
}

pg_down() {
    if is_root && ! id postgres >/dev/null 2>&1; then
        log "no Postgres started by this script on port $pg_port"
        return 0
    fi
    pg_paths
    # pg_ctl status: 0 = running, 3 = not running, 4 = no cluster there.
    if [[ ! -f $pg_data/PG_VERSION ]] || ! as_pg "$PG_BIN/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
        log "no Postgres started by this script on port $pg_port"
        return 0
    fi
    log "stopping Postgres on port $pg_port"
    as_pg "$PG_BIN/pg_ctl" -D "$pg_data" -m fast -w -t 30 stop >/dev/null
}

# A node of the cluster on $1: its own directory, AOF every second.
cluster_node_up() {
    local port=$1 dir=$ROOT/.data/cluster/$1
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --cluster-require-full-coverage no \
        --appendonly yes --appendfsync everysec --save "" \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
}

cluster_up() {
    local port ports=() i
    ensure_redis_installed
    for ((i = 0; i < 6; i++)); do ports+=($((redis_port + i))); done
    for port in "${ports[@]}"; do
        if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
            log "starting cluster node on 127.0.0.1:$port"
            cluster_node_up "$port"
        fi
    done
    for port in "${ports[@]}"; do
        wait_for "cluster node $port" "$ROOT/.data/cluster/$port/redis.log" \
            redis-cli -p "$port" ping
    done
    if redis-cli -p "$redis_port" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
        log "the cluster on ports ${ports[0]}-${ports[5]} is up already"
    else
        log "creating the cluster: 3 masters, 3 replicas"
        redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") \
            --cluster-replicas 1 --cluster-yes >&2
        local deadline=$((SECONDS + 30))
        until redis-cli -p "$redis_port" cluster info | grep -q 'cluster_state:ok'; do
            ((SECONDS < deadline)) || die "the cluster did not reach state ok within 30 s"
            sleep 0.5
        done
    fi
    log "cluster is up: REDIS_URL=redis://127.0.0.1:$redis_port/ (with redis.cluster = true)"
    printf 'export REDIS_URL=%s\n' "redis://127.0.0.1:$redis_port/"
}

cluster_down() {
    local i port pid
    for ((i = 0; i < 6; i++)); do
        port=$((redis_port + i))
        pid=$(cat "$ROOT/.data/cluster/$port/redis.pid" 2>/dev/null || true)
        [[ -n $pid ]] && ps -p "$pid" >/dev/null 2>&1 || continue
        log "stopping cluster node on port $port (pid $pid)"
        redis-cli -p "$port" shutdown >/dev/null 2>&1 || true
    done
}

# Headless Chromium and its WebDriver, for tests/console.
browser_up() {
    if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
        return 0
    fi
    apt_install chromium chromium-driver
}

case $profile:$action in
    browser:up) browser_up; exit 0 ;;
    browser:down) exit 0 ;;
    cluster:up) cluster_up; exit 0 ;;
    cluster:down) cluster_down; exit 0 ;;
esac

case $action in
    up)
        redis_up
        pg_up
        redis_url=redis://127.0.0.1:$redis_port/
        database_url=postgres://stockhold@127.0.0.1:$pg_port/$db
        log "$profile services are up:"
        log "  REDIS_URL=$redis_url"
        log "  DATABASE_URL=$database_url"
        log "stop them with: scripts/services.sh down $profile"
        printf 'export REDIS_URL=%s\nexport DATABASE_URL=%s\n' "$redis_url" "$database_url"
        ;;
    down)
        redis_down
        pg_down
        ;;
    *) usage ;;
esac
