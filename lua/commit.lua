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
--   {'ok', st, cust, chan, ca, ea, ln, oid, cat, pref, fresh, outbox_id}
--        fresh = '1' when this call made the sale, '0' when it was made before
--        (outbox_id is '' then)
--   {'not_found'} | {'expired'} | {'released'} | {'empty'} | {'order_taken'}
-- Per line: on_hand and held drop by qty; the customer's count is unchanged
-- (held becomes bought). The outbox entry carries every field the ledger needs:
--   kind=commit order res cust chan pref at lines="sku qty on_hand_after ..."
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'not_found' } end
if h.st == 'committed' then
  local reply = hold_reply(h)
  reply[#reply + 1] = '0'
  reply[#reply + 1] = ''
  return reply
end
local now = now_ms()
if expire_if_due(base, key, id, h, now) then return { 'expired' } end
if h.st ~= 'held' then return { h.st } end
local lines = parse_hold_lines(h.ln)
if #lines == 0 then return { 'empty' } end
local order_key = base .. 'order:' .. ARGV[3]
if redis.call('EXISTS', order_key) == 1 then return { 'order_taken' } end

local sold = {}
for _, l in ipairs(lines) do
  local sku_key = base .. 'sku:' .. l[1]
  local after = redis.call('HINCRBY', sku_key, 'on_hand', -l[2])
  redis.call('HINCRBY', sku_key, 'held', -l[2])
  sold[#sold + 1] = l[1] .. ' ' .. int(l[2]) .. ' ' .. int(after)
end
h.st, h.oid, h.cat, h.pref = 'committed', ARGV[3], int(now), ARGV[4]
redis.call('HSET', key, 'st', h.st, 'oid', h.oid, 'cat', h.cat, 'pref', h.pref)
redis.call('ZREM', base .. 'exp', id)
redis.call('PEXPIRE', key, ENDED_TTL_MS)
redis.call('SET', order_key, id, 'PX', ORDER_TTL_MS)
local outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'commit',
  'order', h.oid, 'res', id, 'cust', h.cust, 'chan', h.chan, 'pref', h.pref,
  'at', h.cat, 'lines', table.concat(sold, ' '))
local reply = hold_reply(h)
reply[#reply + 1] = '1'
reply[#reply + 1] = outbox_id
return reply
