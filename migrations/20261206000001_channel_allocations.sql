-- Channel allocations and safety stock (README, "Allocations and safety
-- stock"). A channel's allocation of a SKU is an account of its own in the
-- ledger: a `skus` row named `sku@channel` (a SKU never contains `@`) whose
-- on_hand is the allocation's share, kept by the same drain and outbox
-- claims as a SKU's. Its movements are the units set aside for it (kind
-- 'allocation'), sold from it ('commit') and returned to it ('return'); the
-- SKU's own ledger shows each change of the setting as an 'allocation' row
-- of delta 0 (units move within on_hand).
ALTER TABLE skus
    ADD COLUMN safety_stock bigint NOT NULL DEFAULT 0,
    ADD COLUMN allocations text[] NOT NULL DEFAULT '{}';

ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_kind_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_kind_check
    CHECK (kind IN ('created', 'adjustment', 'commit', 'return', 'repair', 'transfer',
                    'allocation'))
    -- Looser than the check it replaces: the rows there satisfy it.
    NOT VALID;

-- Units of each return line that go back to the allocation of the order's
-- channel (those sold from it first, less what earlier returns of the
-- order gave back to it): decided when the return is recorded, under the
-- order's lock, so a retried or resumed restock puts them in the same pool.
ALTER TABLE return_lines ADD COLUMN pooled bigint NOT NULL DEFAULT 0;
