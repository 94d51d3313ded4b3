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
-- ARGV[4]  number of SKUs n, then 5 values per SKU from ARGV[5] on:
--          sku, on_hand expected before the entries after R, backorder_limit,
--          per_customer_limit ('' = none), sale_starts_at ms ('' = none)
--
-- Returns {'ok', …} with 5 values per drifted SKU:
--   sku, expected on_hand, expected held, actual on_hand ('' = missing), actual held
-- Expected held is the sum of the SKU's lines over all holds in state held.
-- Runs atomically, so under full load it sees one consistent instant.
local base, mode, after = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4])
local skus, expected_on_hand, expected_held = {}, {}, {}
for i = 0, n - 1 do
  local sku = ARGV[5 + i * 5]
  skus[#skus + 1] = sku
  expected_on_hand[sku] = tonumber(ARGV[6 + i * 5])
  expected_held[sku] = 0
end

-- Entries appended after the caller read the outbox.
local tail = redis.call('XRANGE', base .. 'outbox', '(' .. after, '+')
for _, entry in ipairs(tail) do
  local f = {}
  local kv = entry[2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  if f.kind == 'commit' or f.kind == 'return' then
    local sign = f.kind == 'commit' and -1 or 1
    for sku, q in string.gmatch(f.lines, '(%S+) (%d+) %-?%d+') do
      if expected_on_hand[sku] then
        expected_on_hand[sku] = expected_on_hand[sku] + sign * tonumber(q)
      end
    end
  elseif f.sku and expected_on_hand[f.sku] then
    expected_on_hand[f.sku] = expected_on_hand[f.sku] + tonumber(f.delta)
  end
end

-- Live holds.
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', base .. 'hold:' .. id, 'st', 'ln')
  if h[1] == 'held' then
    for _, l in ipairs(parse_hold_lines(h[2])) do
      if expected_held[l[1]] then
        expected_held[l[1]] = expected_held[l[1]] + l[2]
      end
    end
  end
end

local drifted = { 'ok' }
for i, sku in ipairs(skus) do
  local key = base .. 'sku:' .. sku
  local v = redis.call('HMGET', key, 'on_hand', 'held')
  local on_hand, held = tonumber(v[1]), tonumber(v[2] or '0')
  local want_on_hand, want_held = expected_on_hand[sku], expected_held[sku]
  if on_hand ~= want_on_hand or held ~= want_held then
    for _, x in ipairs({ sku, int(want_on_hand), int(want_held), v[1] or '', int(held) }) do
      drifted[#drifted + 1] = x
    end
    if mode ~= 'check' then
      redis.call('HSET', key, 'on_hand', int(want_on_hand), 'held', int(want_held))
      if not on_hand then
        local j = 5 + (i - 1) * 5
        redis.call('HSET', key, 'bo', ARGV[j + 2])
        if ARGV[j + 3] ~= '' then redis.call('HSET', key, 'pcl', ARGV[j + 3]) end
        if ARGV[j + 4] ~= '' then redis.call('HSET', key, 'ssa', ARGV[j + 4]) end
      end
    end
  end
end
return drifted
