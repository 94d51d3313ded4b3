-- restock.lua: puts returned units back into on_hand, once per return id.
--
-- KEYS[1]  base.."marks:ret:"..return_id (the once-only mark)
-- ARGV[1]  base prefix
-- ARGV[2]  return id
-- ARGV[3]  order id
-- ARGV[4]  lines "sku qty ..." (qty >= 1)
--
-- Returns one of
--   {'ok', outbox_id}   restocked now
--   {'repeat'}          restocked before
--   {'not_ready'}
-- on_hand and available rise together (held stays).
-- Outbox entry: kind=return ret order at lines="sku qty on_hand_after ..."
local base, mark = ARGV[1], KEYS[1]
if not ready(base) then return { 'not_ready' } end
if redis.call('EXISTS', mark) == 1 then return { 'repeat' } end
local back = {}
for sku, q in string.gmatch(ARGV[4], '(%S+) (%d+)') do
  local after = redis.call('HINCRBY', base .. 'onhand', sku, q)
  redis.call('HINCRBY', base .. 'avail', sku, q)
  back[#back + 1] = sku .. ' ' .. q .. ' ' .. int(after)
end
redis.call('SET', mark, '1', 'PX', ORDER_TTL_MS)
local outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'return', 'ret', ARGV[2],
  'order', ARGV[3], 'at', int(now_ms()), 'lines', table.concat(back, ' '))
return { 'ok', outbox_id }
