-- set_customer_counts.lua: restores per-customer totals (units held plus
-- bought of SKUs with a per-customer limit) after Redis lost its data.
--
-- KEYS[1]  base.."ready" (routing only; read, never written)
-- ARGV[1]  base prefix
-- ARGV[2…] triples: customer id, sku, units bought
--
-- Returns the number of totals set. Only runs while Redis is not ready (a
-- rebuild is under way), so it never overwrites counts of live holds.
local base = ARGV[1]
if ready(base) then return 0 end
local set = 0
for i = 2, #ARGV, 3 do
  redis.call('HSET', base .. 'cust:' .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
  set = set + 1
end
return set
