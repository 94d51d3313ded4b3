-- Commits record their rows without touching skus (no row lock shared by
-- every buyer of a hot SKU); the outbox drain alone moves skus.on_hand, by
-- the movements of the entries it moves the watermark over. So from now on:
--   skus.on_hand = sum of the SKU's movements of outbox entries up to the
--                  watermark
-- and the ledger's on_hand is that plus the movements of entries after it
-- (view sku_stock). Entries after the watermark that were recorded before
-- this migration had already been added to skus.on_hand: take them out.

CREATE INDEX stock_movements_by_outbox ON stock_movements (outbox_ms, outbox_seq)
    WHERE outbox_ms IS NOT NULL;

INSERT INTO outbox_watermark (partition, stream_ms, stream_seq) VALUES ('p0', 0, 0)
ON CONFLICT DO NOTHING;

UPDATE skus SET on_hand = skus.on_hand - m.delta
FROM (SELECT sku, sum(delta)::bigint AS delta
      FROM stock_movements, outbox_watermark w
      WHERE w.partition = 'p0' AND (outbox_ms, outbox_seq) > (w.stream_ms, w.stream_seq)
      GROUP BY sku) m
WHERE skus.sku = m.sku;

COMMENT ON COLUMN skus.on_hand IS
    'on_hand after every outbox entry up to outbox_watermark (kept by the drain); see sku_stock';

-- Each SKU's on_hand after every recorded entry: what the ledger says.
CREATE VIEW sku_stock AS
SELECT s.sku, s.on_hand + coalesce(m.delta, 0) AS on_hand
FROM skus s
LEFT JOIN (SELECT sku, sum(delta)::bigint AS delta
           FROM stock_movements, outbox_watermark w
           WHERE w.partition = 'p0' AND (outbox_ms, outbox_seq) > (w.stream_ms, w.stream_seq)
           GROUP BY sku) m USING (sku);
