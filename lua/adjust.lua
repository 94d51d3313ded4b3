-- adjust.lua: changes a SKU's on_hand by a relative amount, once per
-- adjustment id, never below the units held.
--
-- KEYS[1]  base.."avail"
-- ARGV[1]  base prefix
-- ARGV[2]  sku
-- ARGV[3]  adjustment id
-- ARGV[4]  delta (non-zero)
-- ARGV[5]  reason ('' = none)
--
-- Returns one of
--   {'ok', on_hand, held, bo, pcl, ssa, outbox_id, pools, low}  (pools as
--        pools_text; low '' when none)
--   {'repeat', sku, delta}      the id was applied before (to that SKU, by that delta)
--   {'not_ready'} | {'not_found'}
--   {'insufficient', on_hand, held}   a decrease would take on_hand below held
--        (with pools: the shared pool's units below what it holds)
-- on_hand and available move together (held stays); the change is the
-- shared pool's (allocations keep their shares, safety stock its units).
-- Outbox entry: kind=adjustment sku adj delta on_hand_after reason at
local base, sku = ARGV[1], ARGV[2]
if not ready(base) then return { 'not_ready' } end
local mark = base .. 'marks:adj:' .. ARGV[3]
local seen = redis.call('GET', mark)
if seen then
  local s, d = string.match(seen, '^(%S+) (%-?%d+)$')
  return { 'repeat', s, d }
end
local v = read_sku(base, sku)
if not v then return { 'not_found' } end
local delta = tonumber(ARGV[4])
-- Only a decrease can take on_hand below what holds need: a receipt is
-- always welcome, also while a SKU is sold on backorder (on_hand < held).
local shared = v.on_hand - v.shares - v.safety
if delta < 0 and shared + delta < v.shared_held then
  return { 'insufficient', int(shared), int(v.shared_held) }
end

local after = redis.call('HINCRBY', base .. 'onhand', sku, delta)
redis.call('HINCRBY', KEYS[1], sku, delta)
redis.call('SET', mark, sku .. ' ' .. int(delta), 'PX', ORDER_TTL_MS)
local outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'adjustment', 'sku', sku,
  'adj', ARGV[3], 'delta', int(delta), 'on_hand_after', int(after), 'reason', ARGV[5],
  'at', int(now_ms()))
ev_add(base, 'sku.adjusted', sku, { 'delta', int(delta), 'onhand', int(after), 'reason', 'adjustment',
  'ref', ARGV[3], 'note', ARGV[5] })
return { 'ok', int(after), int(v.held), int(v.bo), v.pcl, v.ssa, outbox_id, pools_text(v), v.low }
