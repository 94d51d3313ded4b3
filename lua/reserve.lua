-- reserve.lua: holds every line of a basket (or of its part in this
-- partition, as the home of a basket over several), or nothing.
--
-- KEYS[1]  hold key (base.."hold:"..id); must not exist yet
-- ARGV[1]  base prefix "<prefix>:{pN}:"
-- ARGV[2]  hold id
-- ARGV[3]  ttl in ms
-- ARGV[4]  customer id ('' = none)
-- ARGV[5]  channel ('' = none); a line of a SKU with an allocation for it
--          takes the allocation's units first, then the shared pool's
-- ARGV[6]  allow_partial: '1' or '0'
-- ARGV[7]  mode: '' (the whole basket is here), 'home' (the home record of a
--          basket whose other parts are staged already) or 'check' (run the
--          checks only, write nothing)
-- ARGV[8]  home: ms when the first part was staged; the home refuses after
--          ARGV[9] ms more (the parts' stages are undone by then)
-- ARGV[10] home: the other partitions; ARGV[11] home: every SKU of the
--          basket in basket order
-- ARGV[12] number of lines n (distinct SKUs)
-- ARGV[13] the SKUs joined by spaces, ARGV[14] their quantities likewise (the
--          hold record's lines when every line is held in full)
-- ARGV[15 .. 14+n]     the SKUs
-- ARGV[15+n .. 14+2n]  their quantities (>= 1)
--
-- Returns one of
--   {'not_ready'}  the partition is not rebuilt yet (nothing done)
--   {'ok', record, shortages}   record as in common.lua (read_hold);
--        shortages = "sku requested available ..." of lines held short
--   {'exists'}                             the hold id is taken (idempotent retry)
--   {'too_late'}                           home: the parts' stages ran out
--   {'checked', unknown, nocust, early, over, short}   mode 'check': each
--        a space-joined list as in the refusals below ('' when none)
--   {'unknown_sku', sku, ...}
--   {'customer_required', sku, ...}        SKUs with a per-customer limit
--   {'sale_not_started', sku, starts_ms, ...}
--   {'limit_exceeded', sku, limit, already, requested, ...}
--   {'insufficient', sku, requested, available, ...}
-- Checks come first; nothing is written unless every check passed. This is
-- the hot path: one HMGET and one HSET of the available counts whatever the
-- number of lines, and no per-line work for rules unless a SKU has one (nor
-- for allocations unless a SKU here has one and the hold names a channel:
-- then one HMGET more).
local argv = ARGV
local base, id, key = argv[1], argv[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local mode = argv[7]
if mode ~= 'check' and redis.call('EXISTS', key) == 1 then
  return { 'exists' }
end
READ[key] = false -- (no hold yet: write_hold need not read it)
local cust, chan, partial = argv[4], argv[5], argv[6] == '1' and mode ~= 'check'
local n = tonumber(argv[12])
local sku0, q0 = 14, 14 + n -- argv[sku0 + i], argv[q0 + i]
local now = now_ms()
local cust_key = base .. 'cust:' .. cust

local avail_key = base .. 'avail'
local rules = read_rules(base, argv, sku0 + 1, sku0 + n)
-- The channel's allocation of each SKU, if any: a line takes from it first,
-- then from the shared pool.
local pools, pool_key = read_pools(base, chan, argv, sku0 + 1, sku0 + n)
local from_pool = {} -- line i -> units it takes from the allocation
local avail = nil

-- The common case first, in a loop of a few operations a line: every SKU
-- set up, none with a rule, every line available in full. Anything else
-- (or a partial hold) goes through the full checks below; nothing has been
-- written either way.
local writes, j = {}, 0   -- avail field/value pairs
local prior = {}          -- the available count each of them replaces
local pwrites, pj = {}, 0 -- the allocations' (pavail) field/value pairs
local plain = rules == nil and not partial and mode ~= 'check'
if plain and pools then
  -- Lines their allocation covers in full need no shared count: only the
  -- others' are read.
  local rest = {}
  for i = 1, n do
    local pa, qs = pools[i], argv[q0 + i]
    local left = pa and pa - (SMALL[qs] or qs)
    if left and left >= 0 then
      pwrites[pj + 1] = argv[sku0 + i]
      pwrites[pj + 2] = fmt('%d', left)
      pj = pj + 2
      from_pool[i] = SMALL[qs] or tonumber(qs)
    else
      rest[#rest + 1] = i
    end
  end
  if #rest > 0 then
    local names = {}
    for k, i in ipairs(rest) do names[k] = argv[sku0 + i] end
    local got = redis.call('HMGET', avail_key, unpack(names))
    for k, i in ipairs(rest) do
      local a = got[k]
      if not a then plain = false break end
      local qs = argv[q0 + i]
      local q = SMALL[qs] or tonumber(qs)
      local pa = pools[i] and tonumber(pools[i]) or 0
      local p = pa > 0 and pa or 0 -- all of it: it is short of q
      local left = a - (q - p)
      if left < 0 then plain = false break end
      writes[j + 1] = names[k]
      writes[j + 2] = fmt('%d', left)
      j = j + 2
      prior[j / 2] = a
      if p > 0 then
        pwrites[pj + 1] = names[k]
        pwrites[pj + 2] = '0'
        pj = pj + 2
        from_pool[i] = p
      end
    end
  end
elseif plain then
  avail = redis.call('HMGET', avail_key, unpack(argv, sku0 + 1, sku0 + n))
  for i = 1, n do
    local a = avail[i]
    if not a then plain = false break end
    local qs = argv[q0 + i]
    local left = a - (SMALL[qs] or qs)
    if left < 0 then plain = false break end
    writes[j + 1] = argv[sku0 + i]
    writes[j + 2] = fmt('%d', left)
    j = j + 2
    prior[j / 2] = a
  end
end

local unknown, nocust = { 'unknown_sku' }, { 'customer_required' }
local early, over, short = { 'sale_not_started' }, { 'limit_exceeded' }, { 'insufficient' }
local fails = { early = early, nocust = nocust, over = over }
local taken = nil       -- { {sku, qty}, ... } once a line is held short
local counted = {}      -- { {sku, qty}, ... } lines counted for the customer
if not plain then
  writes, j, pwrites, pj, from_pool, prior = {}, 0, {}, 0, {}, {}
  avail = avail or redis.call('HMGET', avail_key, unpack(argv, sku0 + 1, sku0 + n))
  for i = 1, n do
    local sku, a = argv[sku0 + i], avail[i]
    if not a then
      unknown[#unknown + 1] = sku
    else
      local qs = argv[q0 + i]
      local q = SMALL[qs] or tonumber(qs)
      local rule = rules and rules[i]
      local is_counted = rule and check_rule(rule, sku, q, now, cust, cust_key, fails)
      local have = a + 0
      local pa = pools and pools[i] and tonumber(pools[i]) or 0
      local p = pa > q and q or (pa > 0 and pa or 0) -- from the allocation
      local take = q - p                               -- from the shared pool
      if take > have then
        take = have > 0 and have or 0
        for _, x in ipairs({ sku, q, p + take }) do short[#short + 1] = x end
        if not taken then
          taken = {}
          for k = 1, i - 1 do
            if avail[k] then taken[#taken + 1] = { argv[sku0 + k], argv[q0 + k] } end
          end
        end
      end
      if take + p > 0 then
        if taken then taken[#taken + 1] = { sku, int(take + p) } end
        if is_counted then counted[#counted + 1] = { sku, take + p } end
        writes[j + 1] = sku
        writes[j + 2] = fmt('%d', have - take)
        j = j + 2
        prior[j / 2] = have
        if p > 0 then
          pwrites[pj + 1] = sku
          pwrites[pj + 2] = fmt('%d', pa - p)
          pj = pj + 2
          from_pool[i] = p
        end
      end
    end
  end
end
if mode == 'check' then
  local out = { 'checked' }
  for _, failed in ipairs({ unknown, nocust, early, over, short }) do
    out[#out + 1] = table.concat(failed, ' ', 2)
  end
  return out
end
for _, failed in ipairs({ unknown, nocust, early, over }) do
  if #failed > 1 then return failed end
end
-- A home may hold nothing itself when its parts hold the rest.
if #short > 1 and (not partial or (j + pj == 0 and (mode ~= 'home' or argv[10] == ''))) then
  return short
end
if mode == 'home' and now - tonumber(argv[8]) > tonumber(argv[9]) then
  return { 'too_late' }
end

if j > 0 then
  redis.call('HSET', avail_key, unpack(writes))
  for k = 1, j, 2 do ev_count(base, writes[k], prior[(k + 1) / 2], writes[k + 1]) end
end
if pj > 0 then redis.call('HSET', pool_key, unpack(pwrites)) end
local counted_skus = {}
for _, c in ipairs(counted) do
  redis.call('HINCRBY', cust_key, c[1], c[2])
  counted_skus[#counted_skus + 1] = c[1]
end
local skus, qtys
if taken then
  local s, q = {}, {}
  for k, t in ipairs(taken) do s[k], q[k] = t[1], t[2] end
  skus, qtys = table.concat(s, ' '), table.concat(q, ' ')
else
  skus, qtys = argv[13], argv[14]
end
-- The units held from the allocation: '*' when every line is held from it
-- in full (the common case costs no text per line).
local pq = ''
if pj > 0 then
  local all = true
  for i = 1, n do
    local qs = argv[q0 + i]
    if from_pool[i] ~= (SMALL[qs] or tonumber(qs)) then all = false break end
  end
  if all then
    pq = '*'
  else
    local held = {}
    for i = 1, n do
      if from_pool[i] then held[#held + 1] = argv[sku0 + i] .. ' ' .. fmt('%d', from_pool[i]) end
    end
    pq = table.concat(held, ' ')
  end
end
local h = { st = 'held', cust = cust, chan = chan, ca = int(now),
  ea = int(now + tonumber(argv[3])), oid = '', cat = '', pref = '',
  counted = table.concat(counted_skus, ' '), skus = skus, qtys = qtys,
  home = '', parts = '', basket = '', ver = '', pv = '', chg = '', pq = pq, pqo = '' }
if mode == 'home' then
  h.parts, h.basket, h.ver = argv[10], argv[11], '1'
end
local rec = write_hold(key, h)
redis.call('ZADD', base .. 'exp', h.ea, id)
local short_text = {}
for k = 2, #short, 3 do
  short_text[#short_text + 1] = short[k] .. ' ' .. int(short[k + 1]) .. ' ' .. int(short[k + 2])
end
return { 'ok', rec, table.concat(short_text, ' ') }
