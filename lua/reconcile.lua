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
-- ARGV[5]  number of SKUs n, then 5 values per SKU from ARGV[6] on:
--          sku, on_hand expected before the entries after R, backorder_limit,
--          per_customer_limit ('' = none), sale_starts_at ms ('' = none)
--
-- Returns {'lease_lost'} (nothing done) in mode 'rebuild' when the caller no
-- longer holds the rebuild lease, else {'ok', …} with 5 values per drifted SKU:
--   sku, expected on_hand, expected held, actual on_hand ('' = missing), actual held
-- Expected held is the sum of the SKU's lines over all holds (and parts) in
-- state held or committing;
-- actual held is on_hand + backorder limit - available. A repair writes
-- on_hand and available (= on_hand + backorder limit - held) of drifted SKUs.
-- Runs atomically, so under full load it sees one consistent instant.
local base, mode, after = ARGV[1], ARGV[2], ARGV[3]
fence(base)
if mode == 'rebuild' and not leased(base, ARGV[4]) then return { 'lease_lost' } end
local n = tonumber(ARGV[5])
local skus, expected_on_hand, expected_held = {}, {}, {}
for i = 0, n - 1 do
  local sku = ARGV[6 + i * 5]
  skus[#skus + 1] = sku
  expected_on_hand[sku] = tonumber(ARGV[7 + i * 5])
  expected_held[sku] = 0
end
if n == 0 then return { 'ok' } end

-- Entries appended after the caller read the outbox.
local tail = redis.call('XRANGE', base .. 'outbox', '(' .. after, '+')
for _, entry in ipairs(tail) do
  local f = {}
  local kv = entry[2]
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  if f.kind == 'commit' or f.kind == 'part' or f.kind == 'return' then
    local sign = f.kind == 'return' and 1 or -1
    for sku, q in string.gmatch(f.lines, '(%S+) (%d+) %-?%d+') do
      if expected_on_hand[sku] then
        expected_on_hand[sku] = expected_on_hand[sku] + sign * tonumber(q)
      end
    end
  elseif f.sku and expected_on_hand[f.sku] then
    expected_on_hand[f.sku] = expected_on_hand[f.sku] + tonumber(f.delta)
  end
end

-- Live holds: those in the reaper's queue, and the homes of commits over
-- several partitions under way (out of the queue while committing).
for _, queue in ipairs({ KEYS[1], base .. 'committing' }) do
  for _, id in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
    local h = read_hold(base .. 'hold:' .. id)
    if h and (h.st == 'held' or h.st == 'committing') then
      local hs, hq = hold_lines(h)
      for i, sku in ipairs(hs) do
        if expected_held[sku] then
          expected_held[sku] = expected_held[sku] + qty(hq[i])
        end
      end
    end
  end
end

local avail = redis.call('HMGET', base .. 'avail', unpack(skus))
local on_hand = redis.call('HMGET', base .. 'onhand', unpack(skus))
local bos = redis.call('HMGET', base .. 'bo', unpack(skus))
local drifted = { 'ok' }
local write_on_hand, write_avail = {}, {}
for i, sku in ipairs(skus) do
  local j = 6 + (i - 1) * 5
  local present = avail[i] ~= false and on_hand[i] ~= false
  local oh = tonumber(on_hand[i] or '0')
  local bo = present and tonumber(bos[i] or '0') or tonumber(ARGV[j + 2])
  local held = present and oh + bo - tonumber(avail[i]) or 0
  local want_on_hand, want_held = expected_on_hand[sku], expected_held[sku]
  if not present or oh ~= want_on_hand or held ~= want_held then
    for _, x in ipairs({ sku, int(want_on_hand), int(want_held),
        present and int(oh) or '', int(held) }) do
      drifted[#drifted + 1] = x
    end
    if mode ~= 'check' then
      for _, x in ipairs({ sku, int(want_on_hand) }) do write_on_hand[#write_on_hand + 1] = x end
      for _, x in ipairs({ sku, int(want_on_hand + bo - want_held) }) do write_avail[#write_avail + 1] = x end
      if not present then
        write_settings(base, sku, bo, ARGV[j + 3], ARGV[j + 4])
      end
    end
  end
end
if #write_on_hand > 0 then
  redis.call('HSET', base .. 'onhand', unpack(write_on_hand))
  redis.call('HSET', base .. 'avail', unpack(write_avail))
end
return drifted
