-- The drain updates skus.on_hand of every SKU a batch touched, several times
-- a second under load. With full pages each such update is a new row version
-- on another page plus a new entry in skus_pkey; with room on the page it is
-- a heap-only update (on_hand and updated_at are in no index). Applies to
-- pages written from now on (a VACUUM FULL rewrites the existing ones).
ALTER TABLE skus SET (fillfactor = 50);
