-- Partitioned live state: every partition of Redis has its own outbox
-- stream, so a stock movement is placed by its entry's partition as well as
-- its stream id, and each partition's drain keeps its own watermark.
-- Movements recorded before were all of partition p0.
ALTER TABLE stock_movements ADD COLUMN outbox_partition text NOT NULL DEFAULT 'p0';

DROP INDEX stock_movements_by_outbox;
CREATE INDEX stock_movements_by_outbox ON stock_movements (outbox_partition, outbox_ms, outbox_seq)
    WHERE outbox_ms IS NOT NULL;

-- The sale of a basket over several partitions is recorded as one order
-- (from its home partition's entry) plus the movements of each other
-- partition's part, each part once: a Redis partition that lost its last
-- writes may sell a part again under a new outbox entry.
CREATE TABLE order_parts (
    order_id  text NOT NULL,
    partition text NOT NULL,
    PRIMARY KEY (order_id, partition)
);

-- Each SKU's on_hand after every recorded entry: skus.on_hand (entries up to
-- the watermark of the movement's partition) plus the movements after it.
CREATE OR REPLACE VIEW sku_stock AS
SELECT s.sku, s.on_hand + coalesce(m.delta, 0) AS on_hand
FROM skus s
LEFT JOIN (SELECT sm.sku, sum(sm.delta)::bigint AS delta
           FROM stock_movements sm
           LEFT JOIN outbox_watermark w ON w.partition = sm.outbox_partition
           WHERE (sm.outbox_ms, sm.outbox_seq)
                 > (coalesce(w.stream_ms, 0), coalesce(w.stream_seq, 0))
           GROUP BY sm.sku) m USING (sku);
