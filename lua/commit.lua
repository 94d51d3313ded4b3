-- commit.lua: turns a held hold into a sale and appends the sale to the outbox.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  order id (unique across all orders)
-- ARGV[4]  payment reference ('' = none)
--
-- Returns one of
--   {'not_ready'}  Redis lost its data and is not rebuilt yet (nothing done)
--   {'ok', record, fresh, outbox_id, sold}
--        fresh = '1' when this call made the sale, '0' when it was made before
--        (outbox_id and sold are '' then); sold is the outbox entry's lines
--   {'not_found'} | {'expired'} | {'released'} | {'empty'} | {'order_taken'}
-- Per line on_hand drops by qty; held drops with it, so available stays and
-- the customer's count is unchanged (held becomes bought). The outbox entry
-- carries every field the ledger needs:
--   kind=commit order res cust chan pref at lines="sku qty on_hand_after ..."
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'not_found' } end
if h.st == 'committed' then
  return { 'ok', encode_hold(h), '0', '', '' }
end
local now = now_ms()
if expire_if_due(base, key, id, h, now) then return { 'expired' } end
if h.st ~= 'held' then return { h.st } end
local skus, qtys = hold_lines(h)
if #skus == 0 then return { 'empty' } end
local order_key = base .. 'order:' .. ARGV[3]
if redis.call('EXISTS', order_key) == 1 then return { 'order_taken' } end

local onhand_key = base .. 'onhand'
local on_hand = redis.call('HMGET', onhand_key, unpack(skus))
local writes, sold = {}, {}
for i, sku in ipairs(skus) do
  local after = int((tonumber(on_hand[i]) or 0) - qty(qtys[i]))
  writes[#writes + 1] = sku
  writes[#writes + 1] = after
  sold[#sold + 1] = sku .. ' ' .. qtys[i] .. ' ' .. after
end
redis.call('HSET', onhand_key, unpack(writes))
h.st, h.oid, h.cat, h.pref = 'committed', ARGV[3], int(now), ARGV[4]
redis.call('ZREM', base .. 'exp', id)
local rec = write_hold(key, h)
redis.call('SET', order_key, id, 'PX', ORDER_TTL_MS)
local lines = table.concat(sold, ' ')
local outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'commit',
  'order', h.oid, 'res', id, 'cust', h.cust, 'chan', h.chan, 'pref', h.pref,
  'at', h.cat, 'lines', lines)
return { 'ok', rec, '1', outbox_id, lines }
