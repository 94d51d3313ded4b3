-- commit.lua: turns a held hold into a sale and appends the sale to the
-- outbox. A basket over several partitions is committed in three steps:
-- 'begin' here at its home (the hold can no longer expire or change), then
-- commit_part.lua in each other partition, then 'finish' here.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  order id (unique across all orders)
-- ARGV[4]  payment reference ('' = none)
-- ARGV[5]  mode: '' (a hold with no parts elsewhere), 'begin' or 'finish'
-- ARGV[6]  '1' when the order id's index entry lives in this partition
--          (checked and written here); '0' when it was claimed elsewhere
-- ARGV[7]  finish: every line of the order "sku qty ..." in basket order
--
-- Returns one of
--   {'not_ready'}  the partition is not rebuilt yet (nothing done)
--   {'ok', record, fresh, outbox_id, sold, pools}
--        fresh = '1' when this call made the sale, '0' when it was made before
--        (outbox_id and sold are '' then); sold is the outbox entry's lines,
--        pools its allocations' part (see sell_lines);
--        'begun' after a begin (the other steps are to follow)
--   {'multi', record}  mode '': the hold has parts elsewhere (nothing done)
--   {'not_found'} | {'expired'} | {'released'} | {'empty'} | {'order_taken'}
-- Per line on_hand drops by qty; held drops with it, so available stays and
-- the customer's count is unchanged (held becomes bought). The outbox entry
-- carries every field the ledger needs:
--   kind=commit order res cust chan pref at lines="sku qty on_hand_after ..."
--   and, for a basket over several partitions, all="sku qty ..." (the lines
--   of every partition: the order's lines); pools="sku@chan n share_after
--   ..." when units were held from the channel's allocations
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local mode, indexed = ARGV[5], ARGV[6] == '1'
local h = read_hold(key)
if not h then return { 'not_found' } end
if h.st == 'committed' then
  return { 'ok', encode_hold(h), '0', '', '' }
end
if mode == '' and h.parts ~= '' then return { 'multi', encode_hold(h) } end
local now = now_ms()
local order_key = base .. 'order:' .. ARGV[3]

if mode == 'begin' then
  if h.st == 'committing' then return { 'ok', encode_hold(h), 'begun', '', '' } end
  if expire_if_due(base, key, id, h, now) then return { 'expired' } end
  if h.st ~= 'held' then return { h.st } end
  if h.skus == '' and h.basket == '' then return { 'empty' } end
  if indexed and redis.call('EXISTS', order_key) == 1 then return { 'order_taken' } end
  h.st, h.oid, h.cat, h.pref = 'committing', ARGV[3], int(now), ARGV[4]
  redis.call('ZREM', base .. 'exp', id)
  redis.call('ZADD', base .. 'committing', now, id)
  if indexed then redis.call('SET', order_key, id, 'PX', ORDER_TTL_MS) end
  return { 'ok', write_hold(key, h), 'begun', '', '' }
end

if mode == 'finish' then
  if h.st ~= 'committing' then return { h.st } end
else
  if expire_if_due(base, key, id, h, now) then return { 'expired' } end
  if h.st ~= 'held' then return { h.st } end
  if h.skus == '' then return { 'empty' } end
  if indexed and redis.call('EXISTS', order_key) == 1 then return { 'order_taken' } end
  h.oid, h.cat, h.pref = ARGV[3], int(now), ARGV[4]
end

h.st = 'committed'
redis.call('ZREM', base .. 'exp', id)
redis.call('ZREM', base .. 'committing', id)
local rec = write_hold(key, h)
if indexed and mode == '' then redis.call('SET', order_key, id, 'PX', ORDER_TTL_MS) end
local lines, pools = sell_lines(base, h)
local entry = { 'kind', 'commit', 'order', h.oid, 'res', id, 'cust', h.cust, 'chan', h.chan,
  'pref', h.pref, 'at', h.cat, 'lines', lines }
if mode == 'finish' then
  entry[#entry + 1] = 'all'
  entry[#entry + 1] = ARGV[7]
end
if pools ~= '' then
  entry[#entry + 1] = 'pools'
  entry[#entry + 1] = pools
end
local outbox_id = redis.call('XADD', base .. 'outbox', '*', unpack(entry))
return { 'ok', rec, '1', outbox_id, lines, pools }
