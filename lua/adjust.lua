-- adjust.lua: changes a SKU's on_hand by a relative amount, once per
-- adjustment id, never below the units held.
--
-- KEYS[1]  SKU key
-- ARGV[1]  base prefix
-- ARGV[2]  sku
-- ARGV[3]  adjustment id
-- ARGV[4]  delta (non-zero)
-- ARGV[5]  reason ('' = none)
--
-- Returns one of
--   {'ok', on_hand, held, bo, pcl, ssa, outbox_id}
--   {'repeat', sku, delta}      the id was applied before (to that SKU, by that delta)
--   {'not_ready'} | {'not_found'}
--   {'insufficient', on_hand, held}   a decrease would take on_hand below held
-- Outbox entry: kind=adjustment sku adj delta on_hand_after reason at
local base, sku, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local mark = base .. 'marks:adj:' .. ARGV[3]
local seen = redis.call('GET', mark)
if seen then
  local s, d = string.match(seen, '^(%S+) (%-?%d+)$')
  return { 'repeat', s, d }
end
local v = redis.call('HMGET', key, 'on_hand', 'held', 'bo', 'pcl', 'ssa')
if not v[1] then return { 'not_found' } end
local delta = tonumber(ARGV[4])
local on_hand, held = tonumber(v[1]), tonumber(v[2] or '0')
-- Only a decrease can take on_hand below what holds need: a receipt is
-- always welcome, also while a SKU is sold on backorder (on_hand < held).
if delta < 0 and on_hand + delta < held then
  return { 'insufficient', int(on_hand), int(held) }
end

local after = redis.call('HINCRBY', key, 'on_hand', delta)
redis.call('SET', mark, sku .. ' ' .. int(delta), 'PX', ORDER_TTL_MS)
local outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'adjustment', 'sku', sku,
  'adj', ARGV[3], 'delta', int(delta), 'on_hand_after', int(after), 'reason', ARGV[5],
  'at', int(now_ms()))
return { 'ok', int(after), int(held), v[3] or '0', v[4] or '', v[5] or '', outbox_id }
