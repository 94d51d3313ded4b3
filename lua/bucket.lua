-- bucket.lua: sets up (or keeps up to date) bucket b >= 1 of a SKU spread
-- over several partitions: its counters exist (0 when new) and it has the
-- SKU's per-customer limit and sale start, as bucket 0 has them.
--
-- KEYS[1]  base.."avail"
-- ARGV[1]  base prefix
-- ARGV[2]  sku
-- ARGV[3]  bucket 0's rules field, "pcl ssa" ('' = none)
--
-- Returns {'not_ready'} or {'ok', available, on_hand}.
local base, sku = ARGV[1], ARGV[2]
if not ready(base) then return { 'not_ready' } end
redis.call('HSETNX', KEYS[1], sku, 0)
redis.call('HSETNX', base .. 'onhand', sku, 0)
-- (its count here is one bucket's: no stock-state events, see flush_events)
redis.call('HSET', base .. 'inbk', sku, '1')
if ARGV[3] == '' then
  redis.call('HDEL', base .. 'rules', sku)
else
  redis.call('HSET', base .. 'rules', sku, ARGV[3])
end
return { 'ok', redis.call('HGET', KEYS[1], sku), redis.call('HGET', base .. 'onhand', sku) }
