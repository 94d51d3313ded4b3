-- tally.lua: counts one commit answered 202 (sold in Redis, not yet in
-- Postgres) in its minute of Redis's clock, for the admin console's
-- overview. A hash of minute (Unix time / 60) -> count; minutes older than
-- the window are dropped as it goes.
--
-- KEYS[1]  the hash
-- ARGV[1]  how many minutes to keep
--
-- Returns the minute's count.
local key, keep = KEYS[1], tonumber(ARGV[1])
local minute = math.floor(tonumber(redis.call('TIME')[1]) / 60)
local n = redis.call('HINCRBY', key, string.format('%d', minute), 1)
if redis.call('HLEN', key) > keep then
  for _, m in ipairs(redis.call('HKEYS', key)) do
    if tonumber(m) <= minute - keep then redis.call('HDEL', key, m) end
  end
end
return n
