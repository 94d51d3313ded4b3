-- settle.lua: marks a hold committed whose order the ledger already has.
--
-- During a rebuild: after Redis lost its last moments (an AOF without its
-- last second), a committed hold can come back as held. Its units leave
-- `held` (available rises by them); `on_hand` is set from the ledger by the
-- rebuild that follows.
--
-- Late (mode 'late', Redis ready): the ledger got the sale after the
-- rebuild read it (the commit's entry was being persisted while Redis
-- restarted without it), so the rebuilt counts miss it. The hold's units of
-- the order's lines here are sold as commit.lua sells them (on_hand drops,
-- held with it), any other units it held go back, and no outbox entry is
-- written: the ledger has the sale.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  order id
-- ARGV[4]  committed_at ms
-- ARGV[5]  the rebuild lease's owner ('' in mode 'late')
-- ARGV[6]  '1' when the order id's index entry lives in this partition
-- ARGV[7]  '' or 'late'
-- ARGV[8]  late: the order's lines in this partition, "sku qty ..."
--
-- Works on a home record and on a part alike (a basket's order is in the
-- ledger only once every part was sold).
-- Returns 1 if the hold was settled, 0 if it was not held (or the mode does
-- not fit Redis's state), 'lease_lost' if a rebuild's caller no longer holds
-- the lease.
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
-- (during a rebuild: no events, as for the rest of the rebuild)
EV.quiet = ARGV[7] == ''
local late = ARGV[7] == 'late'
if late then
  if not ready(base) then return 0 end
else
  if not leased(base, ARGV[5]) then return 'lease_lost' end
  if ready(base) then return 0 end
end
local h = read_hold(key)
if not h or (h.st ~= 'held' and h.st ~= 'committing') then return 0 end
local skus, qtys, counted = hold_lines(h)
local from_pool = pooled(h)
local avail_key, pool_key = base .. 'avail', h.pq ~= '' and pool_keys(base, h.chan)
local back = {}
if late then
  -- Sold as commit.lua sells: units held from the channel's allocation
  -- first (the order's movements say so too).
  local sold = {}
  local w = words(ARGV[8])
  for k = 1, #w, 2 do sold[w[k]] = (sold[w[k]] or 0) + qty(w[k + 1]) end
  local onhand_key = base .. 'onhand'
  local on_hand = #skus > 0 and redis.call('HMGET', onhand_key, unpack(skus)) or {}
  local writes = {}
  local cust_key = base .. 'cust:' .. h.cust
  for i, sku in ipairs(skus) do
    local held = qty(qtys[i])
    local s = sold[sku] or 0
    if s > held then s = held end
    local p = from_pool[sku] or 0
    local sold_p = math.min(s, p)
    if s > 0 then
      writes[#writes + 1] = sku
      writes[#writes + 1] = int((tonumber(on_hand[i]) or 0) - s)
    end
    if sold_p > 0 then
      local _, share_key = pool_keys(base, h.chan)
      redis.call('HINCRBY', share_key, sku, -sold_p)
    end
    if held > s then
      give(back, avail_key, sku, held - s - (p - sold_p))
      if pool_key then give(back, pool_key, sku, p - sold_p) end
      if counted[sku] and redis.call('HINCRBY', cust_key, sku, s - held) <= 0 then
        redis.call('HDEL', cust_key, sku)
      end
    end
  end
  if #writes > 0 then redis.call('HSET', onhand_key, unpack(writes)) end
else
  for i, sku in ipairs(skus) do
    local p = from_pool[sku] or 0
    give(back, avail_key, sku, qty(qtys[i]) - p)
    if pool_key then give(back, pool_key, sku, p) end
  end
end
give_all(back)
h.st, h.oid, h.cat = 'committed', ARGV[3], ARGV[4]
h.pv, h.chg = '', ''
redis.call('ZREM', base .. 'exp', id)
redis.call('ZREM', base .. 'committing', id)
write_hold(key, h)
if ARGV[6] == '1' then
  redis.call('SET', base .. 'order:' .. ARGV[3], id, 'PX', ORDER_TTL_MS)
end
return 1
