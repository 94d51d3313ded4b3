-- settle.lua: marks a hold committed whose order the ledger already has —
-- after Redis lost its last moments (an AOF without its last second), a
-- committed hold can come back as held. Its units leave `held`; `on_hand`
-- is set from the ledger by the rebuild that follows.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  order id
-- ARGV[4]  committed_at ms
--
-- Returns 1 if the hold was settled, 0 if it was not held. Only runs while
-- Redis is not ready (a rebuild is under way).
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if ready(base) then return 0 end
local h = read_hold(key)
if not h or h.st ~= 'held' then return 0 end
for _, l in ipairs(parse_hold_lines(h.ln)) do
  redis.call('HINCRBY', base .. 'sku:' .. l[1], 'held', -l[2])
end
redis.call('HSET', key, 'st', 'committed', 'oid', ARGV[3], 'cat', ARGV[4])
redis.call('ZREM', base .. 'exp', id)
redis.call('PEXPIRE', key, ENDED_TTL_MS)
redis.call('SET', base .. 'order:' .. ARGV[3], id, 'PX', ORDER_TTL_MS)
return 1
