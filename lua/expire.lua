-- expire.lua: ends a batch of holds whose expires_at has passed (the reaper).
--
-- KEYS[1]  expiry queue (base.."exp")
-- ARGV[1]  base prefix
-- ARGV[2]  batch size
--
-- Returns {expired, id, ...}: the number of holds expired (0 while the
-- partition is not rebuilt), then the ids of due parts of baskets whose home
-- is in another partition: a part never ends by itself, the reaper asks its
-- home what became of the basket (and meanwhile the part is not due again
-- for 5 s); then '|' and, for each expired home of a basket over several
-- partitions, "id p p ...": its parts, which the reaper ends at once.
-- Holds are taken oldest first; a queue entry whose hold is gone or
-- already ended is just removed. The units of the whole batch go back in one
-- HMGET and one HSET (per channel's allocations too). Safe to run from several instances at once: each call
-- is atomic and re-reads the queue.
local base, queue = ARGV[1], KEYS[1]
if not ready(base) then return { 0 } end
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', queue, '-inf', int(now), 'LIMIT', 0, tonumber(ARGV[2]))
local expired = 0
local back = {}
local deferred = { 0 }
local homes = {}
for _, id in ipairs(due) do
  local key = base .. 'hold:' .. id
  local h = read_hold(key)
  if h and h.st == 'held' and h.home ~= '' then
    deferred[#deferred + 1] = id
    redis.call('ZADD', queue, now + 5000, id)
  elseif h and h.st == 'held' then
    give_back(base, h, back)
    close_hold(base, key, id, h, 'expired')
    expired = expired + 1
    if h.parts ~= '' then homes[#homes + 1] = id .. ' ' .. h.parts end
  else
    redis.call('ZREM', queue, id)
  end
end
give_all(back)
deferred[1] = expired
if #homes > 0 then
  deferred[#deferred + 1] = '|'
  for _, home in ipairs(homes) do deferred[#deferred + 1] = home end
end
return deferred
