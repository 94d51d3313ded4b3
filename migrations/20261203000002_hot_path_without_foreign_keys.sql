-- A 60-line commit writes 60 order_lines and 60 stock_movements rows; their
-- three foreign keys cost a lookup and a row lock in skus / orders for every
-- one of them, about twice the cost of the inserts themselves (measured:
-- 2 500 orders of 60 lines, 6.4 s with them, 2.0 s without). These rows are
-- written only by the ledger's recorder (src/ledger/apply.rs), from outbox
-- entries of Redis scripts that sell only SKUs that were set up, in the same
-- transaction as their order row; reconciliation compares the ledger with
-- the live counts. So the references hold by construction and the checks go.
ALTER TABLE order_lines DROP CONSTRAINT order_lines_sku_fkey;
ALTER TABLE order_lines DROP CONSTRAINT order_lines_order_id_fkey;
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_sku_fkey;
