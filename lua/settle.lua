-- settle.lua: marks a hold committed whose order the ledger already has —
-- after Redis lost its last moments (an AOF without its last second), a
-- committed hold can come back as held. Its units leave `held` (available
-- rises by them); `on_hand` is set from the ledger by the rebuild that
-- follows.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  order id
-- ARGV[4]  committed_at ms
-- ARGV[5]  the rebuild lease's owner
-- ARGV[6]  '1' when the order id's index entry lives in this partition
--
-- Works on a home record and on a part alike (a basket's order is in the
-- ledger only once every part was sold).
-- Returns 1 if the hold was settled, 0 if it was not held, 'lease_lost' if
-- the caller no longer holds the rebuild lease. Only runs while Redis is not
-- ready (a rebuild is under way).
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not leased(base, ARGV[5]) then return 'lease_lost' end
if ready(base) then return 0 end
local h = read_hold(key)
if not h or (h.st ~= 'held' and h.st ~= 'committing') then return 0 end
local skus, qtys = hold_lines(h)
local back = {}
for i, sku in ipairs(skus) do back[sku] = qty(qtys[i]) end
add_available(base, skus, back)
h.st, h.oid, h.cat = 'committed', ARGV[3], ARGV[4]
h.pv, h.chg = '', ''
redis.call('ZREM', base .. 'exp', id)
redis.call('ZREM', base .. 'committing', id)
write_hold(key, h)
if ARGV[6] == '1' then
  redis.call('SET', base .. 'order:' .. ARGV[3], id, 'PX', ORDER_TTL_MS)
end
return 1
