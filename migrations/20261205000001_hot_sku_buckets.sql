-- Hot-SKU buckets (docs/partitioning.md): a SKU may spread its stock over
-- `buckets` partitions; `bucket_span` is the most it was ever spread over
-- (the partitions that may still hold some of its units). Each bucket's
-- share of on_hand is the sum of the SKU's movements made in that
-- partition (transfers between buckets are movements of kind 'transfer',
-- which the SKU's ledger listing leaves out: they net to zero).
ALTER TABLE skus
    ADD COLUMN buckets integer NOT NULL DEFAULT 1,
    ADD COLUMN bucket_span integer NOT NULL DEFAULT 1;

ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_kind_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_kind_check
    CHECK (kind IN ('created', 'adjustment', 'commit', 'return', 'repair', 'transfer'))
    -- Looser than the check it replaces: the rows there satisfy it.
    NOT VALID;
