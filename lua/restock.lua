-- restock.lua: puts returned units back into on_hand, once per return id.
--
-- KEYS[1]  base.."marks:ret:"..return_id (the once-only mark)
-- ARGV[1]  base prefix
-- ARGV[2]  return id
-- ARGV[3]  order id
-- ARGV[4]  lines "sku qty ..." (qty >= 1)
-- ARGV[5]  the part of them that goes back to a channel's allocation (the
--          order's units sold from it): "sku chan n ..." ('' = none); an
--          allocation removed since takes nothing back (its units go to
--          the shared pool)
--
-- Returns one of
--   {'ok', outbox_id}   restocked now
--   {'repeat'}          restocked before
--   {'not_ready'}
-- on_hand and available rise together (held stays).
-- Outbox entry: kind=return ret order at lines="sku qty on_hand_after ..."
--   pools="sku@chan n share_after ..." (the allocations' part)
local base, mark = ARGV[1], KEYS[1]
if not ready(base) then return { 'not_ready' } end
if redis.call('EXISTS', mark) == 1 then return { 'repeat' } end
local to_pool, pools = {}, {}
for sku, chan, n in string.gmatch(ARGV[5], '(%S+) (%S+) (%d+)') do
  local _, chans = pools_of(base, sku)
  for _, c in ipairs(chans) do
    if c == chan then to_pool[sku] = { chan, tonumber(n) } end
  end
end
local back = {}
for sku, q in string.gmatch(ARGV[4], '(%S+) (%d+)') do
  local after = redis.call('HINCRBY', base .. 'onhand', sku, q)
  local p = to_pool[sku]
  local n = p and math.min(p[2], tonumber(q)) or 0
  redis.call('HINCRBY', base .. 'avail', sku, q - n)
  if n > 0 then
    local avail_key, share_key = pool_keys(base, p[1])
    local share = redis.call('HINCRBY', share_key, sku, n)
    redis.call('HINCRBY', avail_key, sku, n)
    pools[#pools + 1] = pool_account(sku, p[1]) .. ' ' .. int(n) .. ' ' .. int(share)
  end
  back[#back + 1] = sku .. ' ' .. q .. ' ' .. int(after)
  ev_add(base, 'sku.adjusted', sku, { 'delta', q, 'onhand', int(after), 'reason', 'return',
    'ref', ARGV[2], 'note', 'order ' .. ARGV[3] })
end
redis.call('SET', mark, '1', 'PX', ORDER_TTL_MS)
local outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'return', 'ret', ARGV[2],
  'order', ARGV[3], 'at', int(now_ms()), 'lines', table.concat(back, ' '),
  'pools', table.concat(pools, ' '))
return { 'ok', outbox_id }
