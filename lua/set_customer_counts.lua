-- set_customer_counts.lua: restores per-customer totals (units held plus
-- bought of SKUs with a per-customer limit) while Redis is being rebuilt,
-- after the old totals were deleted.
--
-- KEYS[1]  base.."exp" (the live holds; read, never written)
-- ARGV[1]  base prefix
-- ARGV[2]  the rebuild lease's owner
-- ARGV[3]  'clear': delete the keys named after it (old totals, found by
--          SCAN); 'bought': add the triples that follow (customer id, sku,
--          units bought, from the ledger); 'held': add the counted lines of
--          every live hold
--
-- Returns the number of keys deleted or totals added to, or 'lease_lost'
-- if the caller no longer holds the rebuild lease. Only runs while Redis is
-- not ready, so no hold changes meanwhile.
local base = ARGV[1]
if not leased(base, ARGV[2]) then return 'lease_lost' end
if ready(base) then return 0 end
local added = 0
if ARGV[3] == 'clear' then
  for i = 4, #ARGV do
    added = added + redis.call('UNLINK', ARGV[i])
  end
  return added
end
if ARGV[3] == 'bought' then
  for i = 4, #ARGV, 3 do
    redis.call('HINCRBY', base .. 'cust:' .. ARGV[i], ARGV[i + 1], ARGV[i + 2])
    added = added + 1
  end
  return added
end
-- The reaper's queue and the commits over several partitions under way.
for _, queue in ipairs({ KEYS[1], base .. 'committing' }) do
  for _, id in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
    local h = read_hold(base .. 'hold:' .. id)
    if h and (h.st == 'held' or h.st == 'committing') and h.cust ~= '' then
      local skus, qtys, counted = hold_lines(h)
      for i, sku in ipairs(skus) do
        if counted[sku] then
          redis.call('HINCRBY', base .. 'cust:' .. h.cust, sku, qtys[i])
          added = added + 1
        end
      end
    end
  end
end
return added
