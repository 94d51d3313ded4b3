-- A restocking return is marked restocked once each of its lines is back in
-- on_hand. That was found by looking for each line's `return` movement among
-- all of the SKU's movements (the only index is (sku, id)): on a SKU with
-- millions of sales, in the transaction that also records commits. Each
-- line now says it is back when its outbox entry is recorded.
ALTER TABLE return_lines ADD COLUMN restocked boolean NOT NULL DEFAULT false;

UPDATE return_lines rl SET restocked = true
WHERE EXISTS (SELECT 1 FROM stock_movements m
              WHERE m.sku = rl.sku AND m.kind = 'return' AND m.ref = rl.return_id);
