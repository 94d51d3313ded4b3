-- Fewer rows and index entries per sold line (issue 13, measured with
-- bench/sql/commit_levers.sh): a 60-line commit wrote 1 order row, 60
-- order_lines rows and 60 stock_movements rows, with six index entries per
-- line. Now:
--
-- * An order's lines are arrays in its own row (line_skus, line_qtys,
--   line_returned, in basket order); order_lines becomes a view of them.
-- * stock_movements keeps one index: its primary key (sku, id), which is the
--   per-SKU ledger's order as well. The index by outbox position goes.
-- * What each recorded outbox entry did to on_hand is kept with its claim in
--   outbox_applied (skus, deltas: the sum of its movements per SKU). The
--   drain adds those of the entries it moves the watermark over to
--   skus.on_hand, and the ledger's on_hand (view sku_stock) is skus.on_hand
--   plus those after the watermark: found through outbox_applied's primary
--   key instead of an index on every movement.

-- Orders: the lines move into the order row.
ALTER TABLE orders
    ADD COLUMN line_skus text[] NOT NULL DEFAULT '{}',
    ADD COLUMN line_qtys bigint[] NOT NULL DEFAULT '{}',
    ADD COLUMN line_returned bigint[] NOT NULL DEFAULT '{}';

UPDATE orders o
SET line_skus = l.skus, line_qtys = l.qtys, line_returned = l.returned
FROM (SELECT order_id,
             array_agg(sku ORDER BY line_no) AS skus,
             array_agg(qty ORDER BY line_no) AS qtys,
             array_agg(returned_qty ORDER BY line_no) AS returned
      FROM order_lines GROUP BY order_id) l
WHERE o.order_id = l.order_id;

ALTER TABLE orders
    ADD CONSTRAINT orders_lines_align CHECK (
        cardinality(line_qtys) = cardinality(line_skus)
        AND cardinality(line_returned) = cardinality(line_skus));

DROP TABLE order_lines;

-- For reading (reports, tests, psql): one row per line, as before.
CREATE VIEW order_lines AS
SELECT o.order_id, l.line_no::int AS line_no, l.sku, l.qty, l.returned_qty
FROM orders o
CROSS JOIN LATERAL unnest(o.line_skus, o.line_qtys, o.line_returned)
    WITH ORDINALITY AS l(sku, qty, returned_qty, line_no);

-- Each recorded entry's net change of on_hand per SKU. Entries recorded
-- before this migration get theirs from their movements: only those after
-- their partition's watermark are ever added up again.
ALTER TABLE outbox_applied
    ADD COLUMN skus text[] NOT NULL DEFAULT '{}',
    ADD COLUMN deltas bigint[] NOT NULL DEFAULT '{}';

UPDATE outbox_applied a
SET skus = d.skus, deltas = d.deltas
FROM (SELECT p, ms, seq, array_agg(sku ORDER BY sku) AS skus, array_agg(delta ORDER BY sku) AS deltas
      FROM (SELECT m.outbox_partition AS p, m.outbox_ms AS ms, m.outbox_seq AS seq,
                   m.sku, sum(m.delta)::bigint AS delta
            FROM stock_movements m
            LEFT JOIN outbox_watermark w ON w.partition = m.outbox_partition
            WHERE m.outbox_ms IS NOT NULL
              AND (m.outbox_ms, m.outbox_seq) > (coalesce(w.stream_ms, 0), coalesce(w.stream_seq, 0))
            GROUP BY 1, 2, 3, 4) per_sku
      GROUP BY p, ms, seq) d
WHERE (a.partition, a.stream_ms, a.stream_seq) = (d.p, d.ms, d.seq);

-- Movements: one index, (sku, id), for the per-SKU ledger.
DROP INDEX stock_movements_by_outbox;
DROP INDEX stock_movements_by_sku;
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_pkey;
ALTER TABLE stock_movements ADD PRIMARY KEY (sku, id);

-- Each SKU's on_hand after every recorded entry.
CREATE OR REPLACE VIEW sku_stock AS
SELECT s.sku, s.on_hand + coalesce(m.delta, 0) AS on_hand
FROM skus s
LEFT JOIN (SELECT d.sku, sum(d.delta)::bigint AS delta
           FROM outbox_applied a
           LEFT JOIN outbox_watermark w USING (partition)
           CROSS JOIN LATERAL unnest(a.skus, a.deltas) AS d(sku, delta)
           WHERE (a.stream_ms, a.stream_seq)
                 > (coalesce(w.stream_ms, 0), coalesce(w.stream_seq, 0))
           GROUP BY d.sku) m USING (sku);
