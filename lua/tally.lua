-- tally.lua: counts one commit answered 202 (sold in Redis, not yet in
-- Postgres) in its minute, for the admin console's overview. A hash of
-- minute -> count; minutes older than the window are dropped as it goes.
--
-- KEYS[1]  the hash
-- ARGV[1]  the minute (Unix time / 60)
-- ARGV[2]  how many minutes to keep
--
-- Returns the minute's count.
local key, minute, keep = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local n = redis.call('HINCRBY', key, ARGV[1], 1)
if redis.call('HLEN', key) > keep then
  for _, m in ipairs(redis.call('HKEYS', key)) do
    if tonumber(m) <= minute - keep then redis.call('HDEL', key, m) end
  end
end
return n
