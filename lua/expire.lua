-- expire.lua: ends a batch of holds whose expires_at has passed (the reaper).
--
-- KEYS[1]  expiry queue (base.."exp")
-- ARGV[1]  base prefix
-- ARGV[2]  batch size
--
-- Returns the number of holds expired (0 while Redis is not rebuilt). Holds
-- are taken oldest first; a queue entry whose hold is gone or already ended
-- is just removed. The units of the whole batch go back in one HMGET and one
-- HSET. Safe to run from several instances at once: each call is atomic and
-- re-reads the queue.
local base, queue = ARGV[1], KEYS[1]
if not ready(base) then return 0 end
local due = redis.call('ZRANGEBYSCORE', queue, '-inf', int(now_ms()), 'LIMIT', 0, tonumber(ARGV[2]))
local expired = 0
local back, order = {}, {}
for _, id in ipairs(due) do
  local key = base .. 'hold:' .. id
  local h = read_hold(key)
  if h and h.st == 'held' then
    give_back(base, h, back, order)
    close_hold(base, key, id, h, 'expired')
    expired = expired + 1
  else
    redis.call('ZREM', queue, id)
  end
end
add_available(base, order, back)
return expired
