#!/usr/bin/env bash
# The commit path's Postgres cost, lever by lever, with pgbench: each variant
# records group-commit transactions of 4 sales of 60 lines (random SKUs of
# 10 000), 8 clients, and prints sales/s; the PL/pgSQL function of the bench
# suite's SQL baseline (60 guarded UPDATEs + 60 ledger rows per basket) runs
# beside them. Variants alternate, ROUNDS times, each on fresh tables.
#
#   DATABASE_URL=postgres://stockhold@127.0.0.1:5452/postgres bench/sql/commit_levers.sh
set -euo pipefail
url=${DATABASE_URL:?set DATABASE_URL}
secs=${SECONDS_PER_RUN:-10}
rounds=${ROUNDS:-2}
clients=${CLIENTS:-8}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"; }

schema() { # $1 = variant
  psql <<SQL
SET client_min_messages = warning; DROP TABLE IF EXISTS l_applied, l_orders, l_lines, l_moves, l_stock, l_ledger CASCADE;
CREATE TABLE l_applied (partition text, ms bigint, seq bigint, at timestamptz DEFAULT now(),
  PRIMARY KEY (partition, ms, seq));
CREATE TABLE l_orders (order_id text PRIMARY KEY, reservation_id text NOT NULL UNIQUE,
  customer_id text, channel text, payment_ref text, committed_at timestamptz NOT NULL,
  persisted_at timestamptz NOT NULL DEFAULT now(), part text NOT NULL DEFAULT 'p0',
  ms bigint NOT NULL, seq bigint NOT NULL,
  skus text[], qtys bigint[], after bigint[]);
CREATE INDEX l_orders_by_customer ON l_orders (customer_id) WHERE customer_id IS NOT NULL;
CREATE TABLE l_lines (order_id text NOT NULL, line_no int NOT NULL, sku text NOT NULL,
  qty bigint NOT NULL, returned_qty bigint NOT NULL DEFAULT 0, PRIMARY KEY (order_id, sku));
CREATE TABLE l_moves (id bigserial, sku text NOT NULL, at timestamptz NOT NULL,
  kind text NOT NULL, delta bigint NOT NULL, on_hand_after bigint NOT NULL, ref text NOT NULL,
  part text NOT NULL DEFAULT 'p0', ms bigint, seq bigint);
CREATE TABLE l_stock (sku text PRIMARY KEY, on_hand bigint NOT NULL CHECK (on_hand >= 0));
INSERT INTO l_stock SELECT 'S' || i, 1000000000 FROM generate_series(0, 9999) i;
CREATE TABLE l_ledger (id bigserial PRIMARY KEY, basket text NOT NULL, sku text NOT NULL,
  qty bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE OR REPLACE FUNCTION l_take(p_ref text, p_skus text[], p_qtys bigint[]) RETURNS void
LANGUAGE plpgsql AS \$\$
BEGIN
  FOR i IN 1 .. coalesce(array_length(p_skus, 1), 0) LOOP
    UPDATE l_stock SET on_hand = on_hand - p_qtys[i] WHERE sku = p_skus[i] AND on_hand >= p_qtys[i];
    IF NOT FOUND THEN RAISE EXCEPTION 'short'; END IF;
  END LOOP;
  INSERT INTO l_ledger (basket, sku, qty) SELECT p_ref, s, q FROM unnest(p_skus, p_qtys) t(s, q);
END \$\$;
SQL
  case $1 in
    arrays_pk|order_only) psql -c "ALTER TABLE l_moves ADD PRIMARY KEY (sku, id)" ;;
    *) psql -c "ALTER TABLE l_moves ADD PRIMARY KEY (id)" -c "CREATE INDEX l_moves_by_sku ON l_moves (sku, id DESC)" ;;
  esac
  case $1 in
    rows|arrays) psql -c "CREATE INDEX l_moves_by_outbox ON l_moves (part, ms, seq) WHERE ms IS NOT NULL" ;;
    arrays_lean|arrays_pk|order_only) psql -c "CREATE INDEX l_moves_by_outbox ON l_moves (part, ms, seq) WHERE ms IS NOT NULL AND kind <> 'commit'" ;;
  esac
  psql -c "VACUUM ANALYZE" >/dev/null
}

# A batch of 4 sales: (order key k, line n) -> SKU spread so no SKU repeats in a sale.
sales="FROM generate_series(1, 4) o, LATERAL (SELECT (:base::bigint + o) AS k) b"
lines="generate_series(1, 60) n"
sku="'S' || ((k * 7919 + n * 131) % 10000)"
order_row="INSERT INTO l_orders (order_id, reservation_id, customer_id, channel, committed_at, ms, seq, skus, qtys, after)
  SELECT 'o' || k, 'r' || k, 'c' || k, 'web', now(), k, 0,
         ARRAY(SELECT $sku FROM $lines), array_fill(1::bigint, ARRAY[60]), array_fill(1000::bigint, ARRAY[60]) $sales;"
cat > "$dir/rows.sql" <<SQL
\set base random(1, 1000000000000)
BEGIN;
INSERT INTO l_applied (partition, ms, seq) SELECT 'p0', k, 0 $sales;
INSERT INTO l_orders (order_id, reservation_id, customer_id, channel, committed_at, ms, seq)
  SELECT 'o' || k, 'r' || k, 'c' || k, 'web', now(), k, 0 $sales;
INSERT INTO l_lines (order_id, line_no, sku, qty) SELECT 'o' || k, n, $sku, 1 $sales, $lines;
INSERT INTO l_moves (sku, at, kind, delta, on_hand_after, ref, ms, seq)
  SELECT $sku, now(), 'commit', -1, 1000, 'o' || k, k, 0 $sales, $lines;
COMMIT;
SQL
cat > "$dir/arrays.sql" <<SQL
\set base random(1, 1000000000000)
BEGIN;
INSERT INTO l_applied (partition, ms, seq) SELECT 'p0', k, 0 $sales;
$order_row
INSERT INTO l_moves (sku, at, kind, delta, on_hand_after, ref, ms, seq)
  SELECT $sku, now(), 'commit', -1, 1000, 'o' || k, k, 0 $sales, $lines;
COMMIT;
SQL
cp "$dir/arrays.sql" "$dir/arrays_lean.sql"
cp "$dir/arrays.sql" "$dir/arrays_pk.sql"
cat > "$dir/order_only.sql" <<SQL
\set base random(1, 1000000000000)
BEGIN;
INSERT INTO l_applied (partition, ms, seq) SELECT 'p0', k, 0 $sales;
$order_row
COMMIT;
SQL
# The drain's share for order_only: the movements of 50 sales per statement.
cat > "$dir/drain.sql" <<SQL
\set base random(1, 1000000000000)
INSERT INTO l_moves (sku, at, kind, delta, on_hand_after, ref, ms, seq)
  SELECT $sku, now(), 'commit', -1, 1000, 'o' || k, k, 0
  FROM generate_series(1, 50) o, LATERAL (SELECT (:base::bigint + o) AS k) b, $lines;
SQL
cat > "$dir/plpgsql.sql" <<SQL
\set base random(1, 1000000000000)
SELECT l_take('b' || :base, ARRAY(SELECT 'S' || ((:base::bigint * 7919 + n * 131) % 10000) FROM generate_series(1, 60) n ORDER BY 1),
              array_fill(1::bigint, ARRAY[60]));
SQL

rate() { # $1 = script, $2 = sales per transaction
  pgbench -n -c "$clients" -j 2 -T "$secs" -f "$1" "$url" >"$dir/out" 2>"$dir/err" || cat "$dir/err" >&2
  awk -v per="$2" '/^tps/ { printf "%.0f", $3 * per }' "$dir/out"
}
for round in $(seq "$rounds"); do
  for v in rows arrays arrays_lean arrays_pk order_only plpgsql; do
    schema "$v"
    case $v in
      plpgsql) echo "round $round  plpgsql function        $(rate "$dir/plpgsql.sql" 1) baskets/s" ;;
      order_only)
        echo "round $round  order row only (commit)  $(rate "$dir/order_only.sql" 4) sales/s"
        echo "round $round    its drain (movements)  $(rate "$dir/drain.sql" 50) sales/s" ;;
      *) echo "round $round  $(printf '%-22s' "$v") $(rate "$dir/$v.sql" 4) sales/s" ;;
    esac
  done
done
