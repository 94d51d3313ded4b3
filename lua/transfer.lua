-- transfer.lua: moves available units of a SKU spread over buckets from
-- one bucket (partition) to another, in three steps, each one script:
--   take  in the source: up to `units` of what is available there leave
--         (available and on_hand drop together); a pending record keeps
--         the transfer until it is done
--   give  in the destination, once per transfer id: the units arrive
--   done  in the source: the pending record goes
-- Each step appends an outbox entry (kind=transfer, delta -x / +x), so the
-- ledger knows each bucket's share of on_hand. A transfer cut off after its
-- take is finished by the reaper (`due`, then give and done).
--
-- KEYS[1]  base.."avail"
-- ARGV[1]  base prefix
-- ARGV[2]  op: take | give | done | due | undo | pending
-- ARGV[3]  transfer id (due: ms after its take a pending transfer is due)
-- ARGV[4]  sku (take, give)
-- ARGV[5]  units (take: at most; give: exactly)
-- ARGV[6]  destination partition number (take)
--
-- Returns {'not_ready'} | {'unknown_sku'} (no counters for the SKU here) |
--   take: {'ok', units taken, outbox id, on_hand_after, at} (units 0:
--         nothing available, nothing written)
--   give: {'ok'} | {'repeat'}
--   done: {'ok'}
--   undo: {'ok'} the take given back in the source (its record could not
--         be made durable) | {'gone'} the transfer is no longer pending, or
--         is as old as ARGV[4] ms (the reaper's to finish)
--   pending: {'ok', '1' | '0'} whether the transfer is still pending here
--   due:  {'ok', id, "sku units to", ...} (at most 100)
-- Outbox entry: kind=transfer sku xfer delta on_hand_after at
local base, op, id = ARGV[1], ARGV[2], ARGV[3]
if not ready(base) then return { 'not_ready' } end
local pending, by_time = base .. 'xfer', base .. 'xfers'
if op == 'done' then
  redis.call('HDEL', pending, id)
  redis.call('ZREM', by_time, id)
  return { 'ok' }
end
if op == 'pending' then
  return { 'ok', int(redis.call('HEXISTS', pending, id)) }
end
if op == 'undo' then
  local rec = redis.call('HGET', pending, id)
  local taken = tonumber(redis.call('ZSCORE', by_time, id) or '0')
  if not rec or now_ms() - taken >= tonumber(ARGV[4]) then return { 'gone' } end
  local sku, x = string.match(rec, '^(%S+) (%d+) ')
  redis.call('HDEL', pending, id)
  redis.call('ZREM', by_time, id)
  redis.call('HINCRBY', KEYS[1], sku, x)
  local after = redis.call('HINCRBY', base .. 'onhand', sku, x)
  redis.call('XADD', base .. 'outbox', '*', 'kind', 'transfer', 'sku', sku, 'xfer', id,
    'delta', x, 'on_hand_after', int(after), 'at', int(now_ms()))
  return { 'ok' }
end
if op == 'due' then
  local out = { 'ok' }
  for _, t in ipairs(redis.call('ZRANGEBYSCORE', by_time, '-inf', now_ms() - tonumber(id),
      'LIMIT', 0, 100)) do
    out[#out + 1] = t
    out[#out + 1] = redis.call('HGET', pending, t) or ''
  end
  return out
end
local sku = ARGV[4]
local avail = redis.call('HGET', KEYS[1], sku)
if not avail then return { 'unknown_sku' } end
local x = tonumber(ARGV[5])
if op == 'take' then
  local free = tonumber(avail)
  if free < x then x = free end
  if x <= 0 then return { 'ok', '0' } end
  redis.call('HINCRBY', KEYS[1], sku, -x)
  local after = redis.call('HINCRBY', base .. 'onhand', sku, -x)
  local at = int(now_ms())
  redis.call('HSET', pending, id, sku .. ' ' .. int(x) .. ' ' .. ARGV[6])
  redis.call('ZADD', by_time, at, id)
  local entry = redis.call('XADD', base .. 'outbox', '*', 'kind', 'transfer', 'sku', sku,
    'xfer', id, 'delta', int(-x), 'on_hand_after', int(after), 'at', at)
  return { 'ok', int(x), entry, int(after), at }
end
-- give
if not redis.call('SET', base .. 'marks:xfer:' .. id, '1', 'NX', 'PX', ENDED_TTL_MS) then
  return { 'repeat' }
end
redis.call('HINCRBY', KEYS[1], sku, x)
local after = redis.call('HINCRBY', base .. 'onhand', sku, x)
redis.call('XADD', base .. 'outbox', '*', 'kind', 'transfer', 'sku', sku, 'xfer', id,
  'delta', int(x), 'on_hand_after', int(after), 'at', int(now_ms()))
return { 'ok' }
