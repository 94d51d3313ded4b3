-- reconcile.lua: compares (and optionally sets) the live counts of a batch
-- of SKUs against what the ledger and the live holds say they must be.
--
-- KEYS[1]  expiry queue (base.."exp"): every hold in state held is in it
-- ARGV[1]  base prefix
-- ARGV[2]  mode: 'check' (report only), 'repair' (write drifted counts) or
--          'rebuild' (as repair, and also restore the settings of SKUs
--          missing from Redis)
-- ARGV[3]  outbox id R: the caller counted entries up to R; this script adds
--          the on_hand deltas of entries after R (made since the caller read)
-- ARGV[4]  the rebuild lease's owner (mode 'rebuild'; '' otherwise)
-- ARGV[5]  the token of the watch (watch.lua) the caller read the holds under
-- ARGV[6]  number of SKUs n, then 9 values per SKU from ARGV[7] on: sku,
--          on_hand expected before the entries after R, held by the live
--          holds as they were when the watch began, backorder_limit,
--          per_customer_limit ('' = none), sale_starts_at ms ('' = none),
--          "buckets span" of a spread SKU in its own partition ('' = not
--          spread; '-' = this partition is another of its buckets), which
--          modes other than 'check' put back in base.."bk" where missing,
--          its pools "safety chan ..." ('' = none; put back with the
--          other settings of a SKU missing from Redis), and its low-stock
--          threshold ('' = none; likewise)
--          A channel's allocation of a SKU is a row of its own named
--          "sku@chan" (its share as on_hand, held = units held from it;
--          no backorder, no settings), in the same batch as its SKU: the
--          SKU's row counts its shared pool, whose available is on_hand -
--          the shares - safety + backorder - held from it.
--
-- Returns {'lease_lost'} (nothing done) in mode 'rebuild' when the caller no
-- longer holds the rebuild lease; {'rewatch'} (nothing done) when the watch
-- the caller read the holds under was abandoned (changes since may be
-- unknown to it); else {'ok', changed, …}: changed = how many holds changed
-- since the watch began, then 5 values per drifted SKU:
--   sku, expected on_hand, expected held, actual on_hand ('' = missing), actual held
-- Expected held is the sum of the SKU's lines over all holds (and parts) in
-- state held or committing: what the caller counted as of the watch's
-- start, plus, for each hold changed since (the watch's touched hash keeps
-- it as it was then), its lines now less its lines then;
-- actual held is on_hand + backorder limit - available. A repair writes
-- on_hand and available (= on_hand + backorder limit - held) of drifted SKUs.
-- Runs atomically, so under full load it sees one consistent instant.
local base, mode, after = ARGV[1], ARGV[2], ARGV[3]
fence(base)
if mode == 'rebuild' and not leased(base, ARGV[4]) then return { 'lease_lost' } end
-- A rebuild keeps the SKUs' stock states but writes no event: what it
-- restores happened before (or was lost with the events).
EV.quiet = mode == 'rebuild'
local watches, touched_key = base .. 'watches', base .. 'touched:' .. ARGV[5]
if not redis.call('ZSCORE', watches, ARGV[5]) then return { 'rewatch' } end
redis.call('ZADD', watches, now_ms() + WATCH_TTL_MS, ARGV[5])
local n = tonumber(ARGV[6])
local first, width = 7, 9 -- ARGV[first + i * width ..] is SKU i's row
local skus, expected_on_hand, expected_held = {}, {}, {}
for i = 0, n - 1 do
  local j = first + i * width
  local sku = ARGV[j]
  skus[#skus + 1] = sku
  expected_on_hand[sku] = tonumber(ARGV[j + 1])
  expected_held[sku] = tonumber(ARGV[j + 2])
end
if n == 0 then return { 'ok', '0' } end

-- Entries appended after the caller read the outbox.
local tail = redis.call('XRANGE', base .. 'outbox', '(' .. after, '+')
for _, entry in ipairs(tail) do
  local f = {}
  local kv = entry[2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  if f.kind == 'commit' or f.kind == 'part' or f.kind == 'return' then
    local sign = f.kind == 'return' and 1 or -1
    for sku, q in string.gmatch(f.lines .. ' ' .. (f.pools or ''), '(%S+) (%d+) %-?%d+') do
      if expected_on_hand[sku] then
        expected_on_hand[sku] = expected_on_hand[sku] + sign * tonumber(q)
      end
    end
  elseif f.sku and expected_on_hand[f.sku] then
    expected_on_hand[f.sku] = expected_on_hand[f.sku] + tonumber(f.delta)
    for c, d in string.gmatch(f.pools or '', '(%S+) %d+ (%-?%d+)') do
      local field = pool_account(f.sku, c)
      if expected_on_hand[field] then
        expected_on_hand[field] = expected_on_hand[field] + tonumber(d)
      end
    end
  end
end

-- Holds changed since the watch began: count them as they are now
-- instead of as they were then.
local function count(rec, sign)
  if rec == '' then return end
  local h = parse_hold(rec)
  if h.st == 'held' or h.st == 'committing' then
    local hs, hq = hold_lines(h)
    local from_pool = pooled(h)
    for i, sku in ipairs(hs) do
      local p = from_pool[sku] or 0
      if expected_held[sku] then
        expected_held[sku] = expected_held[sku] + sign * (qty(hq[i]) - p)
      end
      local field = p > 0 and pool_account(sku, h.chan)
      if field and expected_held[field] then
        expected_held[field] = expected_held[field] + sign * p
      end
    end
  end
end
local touched = redis.call('HGETALL', touched_key)
for k = 1, #touched, 2 do
  count(touched[k + 1], -1)
  count(redis.call('GET', touched[k]) or '', 1)
end

local avail = redis.call('HMGET', base .. 'avail', unpack(skus))
local on_hand = redis.call('HMGET', base .. 'onhand', unpack(skus))
local bos = redis.call('HMGET', base .. 'bo', unpack(skus))
local configs = redis.call('HMGET', base .. 'pools', unpack(skus))
-- What each SKU's shared pool leaves out: its safety stock (Redis's, or
-- the ledger's for a SKU missing there) and its allocations' shares,
-- expected and actual.
-- An allocation's row: its counts are in the channel's hashes.
local parent, channel = {}, {}
for i, sku in ipairs(skus) do
  parent[i], channel[i] = string.match(sku, '^([^@]+)@(.+)$')
  if parent[i] then
    local avail_key, share_key = pool_keys(base, channel[i])
    avail[i] = redis.call('HGET', avail_key, parent[i])
    on_hand[i] = redis.call('HGET', share_key, parent[i])
  end
end
local deduct_want, deduct_now = {}, {}
for i, sku in ipairs(skus) do
  if not parent[i] then
    local config = configs[i] or (avail[i] and '0' or ARGV[first + (i - 1) * width + 7])
    local safety = tonumber(string.match(config, '^(%d+)') or '0')
    deduct_want[sku], deduct_now[sku] = safety, safety
  end
end
local rows = {}
for i, sku in ipairs(skus) do
  rows[sku] = true
  local of = parent[i]
  if of and deduct_want[of] then
    deduct_want[of] = deduct_want[of] + expected_on_hand[sku]
    deduct_now[of] = deduct_now[of] + tonumber(on_hand[i] or '0')
  end
end
-- An allocation Redis has that the caller had no row for (made after the
-- caller read the ledger): its share is left out of the shared pool on
-- both sides, unverified rather than drift.
for i, sku in ipairs(skus) do
  if not parent[i] and configs[i] then
    local chans = words(configs[i])
    for k = 2, #chans do
      if not rows[pool_account(sku, chans[k])] then
        local _, share_key = pool_keys(base, chans[k])
        local share = tonumber(redis.call('HGET', share_key, sku) or '0')
        deduct_want[sku] = deduct_want[sku] + share
        deduct_now[sku] = deduct_now[sku] + share
      end
    end
  end
end
local drifted = { 'ok', int(#touched / 2) }
local write_on_hand, write_avail = {}, {}
for i, sku in ipairs(skus) do
  local j = first + (i - 1) * width
  local present = avail[i] ~= false and on_hand[i] ~= false
  local oh = tonumber(on_hand[i] or '0')
  local bo = present and tonumber(bos[i] or '0') or tonumber(ARGV[j + 3])
  local held = present and oh + bo - (deduct_now[sku] or 0) - tonumber(avail[i]) or 0
  local want_on_hand, want_held = expected_on_hand[sku], expected_held[sku]
  -- An allocation removed (share 0, nothing held) has no fields.
  local gone = parent[i] and not present and want_on_hand == 0 and want_held == 0
  -- A SKU whose allocations' shares drifted gets its shared pool's
  -- available count written again too.
  local shares_drifted = not parent[i] and deduct_now[sku] ~= deduct_want[sku]
  if not gone and (not present or oh ~= want_on_hand or held ~= want_held or shares_drifted) then
    for _, x in ipairs({ sku, int(want_on_hand), int(want_held),
        present and int(oh) or '', int(held) }) do
      drifted[#drifted + 1] = x
    end
    ev_add(base, mode == 'check' and 'drift.found' or 'drift.repaired', parent[i] or sku,
      { 'pool', parent[i] and channel[i] or '', 'expected_on_hand', int(want_on_hand),
        'expected_held', int(want_held), 'on_hand', present and int(oh) or '', 'held', int(held) })
    if mode ~= 'check' and parent[i] then
      local avail_key, share_key = pool_keys(base, channel[i])
      redis.call('HSET', share_key, parent[i], int(want_on_hand))
      redis.call('HSET', avail_key, parent[i], int(want_on_hand - want_held))
      -- The SKU lists the allocation (a Redis that lost the PUT making it
      -- still has the SKU, without it).
      local config = redis.call('HGET', base .. 'pools', parent[i])
      local listed = false
      local chans = words(config or '')
      for k = 2, #chans do
        if chans[k] == channel[i] then listed = true end
      end
      if not listed then
        redis.call('HSET', base .. 'pools', parent[i], (config or '0') .. ' ' .. channel[i])
      end
    elseif mode ~= 'check' then
      for _, x in ipairs({ sku, int(want_on_hand) }) do write_on_hand[#write_on_hand + 1] = x end
      for _, x in ipairs({ sku, int(want_on_hand + bo - (deduct_want[sku] or 0) - want_held) }) do
        write_avail[#write_avail + 1] = x
      end
      if not present and not parent[i] then
        write_settings(base, sku, bo, ARGV[j + 4], ARGV[j + 5])
        if ARGV[j + 7] ~= '' then redis.call('HSET', base .. 'pools', sku, ARGV[j + 7]) end
        if ARGV[j + 8] ~= '' then redis.call('HSET', base .. 'low', sku, ARGV[j + 8]) end
      end
    end
  end
end
-- How a SKU is spread is Redis's to say (the ledger learns it a drain step
-- later): it is put back where it is missing or narrower than the ledger's
-- (after a data loss), never narrowed.
if mode ~= 'check' then
  local bks = redis.call('HMGET', base .. 'bk', unpack(skus))
  local function span(bk) return tonumber(string.match(bk or '', ' (%d+)$') or '1') end
  for i, sku in ipairs(skus) do
    local want = ARGV[first + (i - 1) * width + 6]
    if want ~= '-' and want ~= '' and span(want) > span(bks[i]) then
      redis.call('HSET', base .. 'bk', sku, want)
    end
    -- Another bucket of a spread SKU: its count here is one bucket's (no
    -- stock-state events, see flush_events).
    if want == '-' then redis.call('HSET', base .. 'inbk', sku, '1') end
  end
end
if #write_on_hand > 0 then
  redis.call('HSET', base .. 'onhand', unpack(write_on_hand))
  redis.call('HSET', base .. 'avail', unpack(write_avail))
end
return drifted
