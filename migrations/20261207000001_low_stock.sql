-- The low-stock threshold of a SKU (issue 14): a sku.low_stock event when
-- what is available drops to it. NULL: none.
ALTER TABLE skus ADD COLUMN low_stock bigint CHECK (low_stock > 0);
