-- Adjustments are idempotent on adjustment_id for good: the live marker in
-- Redis lasts days, this table forever.
CREATE TABLE adjustments (
    adjustment_id text PRIMARY KEY,
    sku           text NOT NULL REFERENCES skus (sku),
    delta         bigint NOT NULL,
    reason        text,
    at            timestamptz NOT NULL
);

-- A restocking return is recorded here first (the returnable check needs the
-- order's lines under a lock), then its units go back to the live on_hand in
-- Redis; restocked_at is set when that change reaches the ledger, and a
-- return left without it (a crash in between) is restocked by the drain.
ALTER TABLE returns ADD COLUMN restocked_at timestamptz;
CREATE INDEX returns_to_restock ON returns (at) WHERE restock AND restocked_at IS NULL;
