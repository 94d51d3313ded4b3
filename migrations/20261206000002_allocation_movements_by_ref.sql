-- A restocking return looks up what its order sold from a channel's
-- allocation: the movements of that account (`sku@channel`) with the order
-- id as ref. Only allocations' movements are indexed, so the commit path
-- pays for it on lines held from an allocation alone.
CREATE INDEX stock_movements_of_allocations ON stock_movements (sku, ref)
    WHERE strpos(sku, '@') > 0;
