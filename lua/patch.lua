-- patch.lua: sets the quantity of named SKUs in a held hold and/or restarts
-- its TTL; all-or-nothing. The hold's own units count in its favour.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  new ttl in ms, or '' to keep expires_at
-- ARGV[4]  mode: '' (the hold lives here alone, or the change is here
--          alone), 'home' (the home record of a basket whose other parts of
--          this change are staged already) or 'check' (the checks only, on
--          whatever part of the hold is here, writing nothing)
-- ARGV[5]  home: the version the change is made on; ARGV[6] its new version
--          (check: ARGV[5] is the hold's customer, for a partition where
--          the hold has no part yet)
-- ARGV[7]  home: ms when the first part was staged; refused after ARGV[8] ms
-- ARGV[9]  home: the other partitions after the change; ARGV[10] every SKU
--          of the basket after the change, in basket order
-- ARGV[11] number of lines n (distinct SKUs; may be 0)
-- ARGV[12 .. 11+n]    the SKUs
-- ARGV[12+n .. 11+2n] their new quantities (>= 0; 0 removes the line)
--
-- Returns one of
--   {'not_ready'}  the partition is not rebuilt yet (nothing done)
--   {'ok', record}
--   {'not_found'} | {'expired'} | {'released'} | {'committed'} | {'committing'}
--   {'conflict'}   home: another change of the basket came first
--   {'too_late'}   home: the parts' stages ran out
--   {'checked', unknown, nocust, early, over, short}   mode 'check'
--   {'unknown_sku', sku, ...} | {'customer_required', sku, ...}
--   {'sale_not_started', sku, starts_ms, ...}
--   {'limit_exceeded', sku, limit, already, requested, ...}
--   {'insufficient', sku, requested, available, ...}
-- A hold found past its expiry is expired on the spot (units returned) and
-- 'expired' is returned; otherwise nothing is written unless all checks pass.
local argv = ARGV
local base, id, key = argv[1], argv[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local mode = argv[4]
local h = read_hold(key)
local now = now_ms()
if mode == 'check' then
  -- (a partition where the hold has no part yet: its allocations are not
  -- counted, the checks only explain a refusal)
  h = h or { cust = argv[5], chan = '', counted = '', skus = '', qtys = '', pq = '' }
else
  if not h then return { 'not_found' } end
  if expire_if_due(base, key, id, h, now) then return { 'expired' } end
  if h.st ~= 'held' then return { h.st } end
end

local n = tonumber(argv[11])
local sku0, q0 = 11, 11 + n
local cust = h.cust
local cust_key = base .. 'cust:' .. cust
local skus, qtys, counted = hold_lines(h)
local at = {} -- sku -> position in skus
for i, sku in ipairs(skus) do at[sku] = i end

local avail = {}
local rules, pools, pool_key = nil, nil, nil
if n > 0 then
  avail = redis.call('HMGET', base .. 'avail', unpack(argv, sku0 + 1, sku0 + n))
  rules = read_rules(base, argv, sku0 + 1, sku0 + n)
  pools, pool_key = read_pools(base, h.chan, argv, sku0 + 1, sku0 + n)
end
-- Units held from the channel's allocation: a line that grows takes from
-- it first, a line that shrinks gives back the shared pool's units first.
local from_pool = pooled(h)
local pwrites = {} -- the allocations' (pavail) field/value pairs

local unknown, nocust = { 'unknown_sku' }, { 'customer_required' }
local early, over, short = { 'sale_not_started' }, { 'limit_exceeded' }, { 'insufficient' }
local fails = { early = early, nocust = nocust, over = over }
local writes = {}      -- avail field/value pairs
local cust_changes = {} -- { {sku, delta}, ... }
local new_qty = {}     -- sku -> new quantity (0 = removed)
for i = 1, n do
  local sku, q = argv[sku0 + i], qty(argv[q0 + i])
  local pos = at[sku]
  local old_q = pos and qty(qtys[pos]) or 0
  local delta = q - old_q
  if delta > 0 then
    local a = avail[i]
    if not a then
      unknown[#unknown + 1] = sku
    else
      local rule = rules and rules[i]
      -- A line held before the SKU got a limit is counted in full from now on.
      local cust_delta = counted[sku] and delta or q
      if rule and check_rule(rule, sku, cust_delta, now, cust, cust_key, fails) then
        cust_changes[#cust_changes + 1] = { sku, cust_delta }
        counted[sku] = true
      end
      local have = a + 0
      if have < 0 then have = 0 end
      local pa = pools and pools[i] and tonumber(pools[i]) or 0
      local p = pa > delta and delta or (pa > 0 and pa or 0)
      if delta - p > have then
        for _, x in ipairs({ sku, q, have + p + old_q }) do short[#short + 1] = x end
      end
      writes[#writes + 1] = sku
      writes[#writes + 1] = int(a - (delta - p))
      if p > 0 then
        pwrites[#pwrites + 1] = sku
        pwrites[#pwrites + 1] = int(pa - p)
        from_pool[sku] = (from_pool[sku] or 0) + p
      end
      new_qty[sku] = q
    end
  elseif delta < 0 then
    local p = from_pool[sku] or 0
    local shared = math.min(-delta, old_q - p)
    writes[#writes + 1] = sku
    writes[#writes + 1] = int((tonumber(avail[i]) or 0) + shared)
    if shared < -delta then
      -- (an allocation with units held from it is never removed)
      pwrites[#pwrites + 1] = sku
      pwrites[#pwrites + 1] = int(tonumber(pools and pools[i] or 0) - delta - shared)
      from_pool[sku] = p + delta + shared
    end
    if counted[sku] then cust_changes[#cust_changes + 1] = { sku, delta } end
    new_qty[sku] = q
  end
end
if mode == 'check' then
  local out = { 'checked' }
  for _, failed in ipairs({ unknown, nocust, early, over, short }) do
    out[#out + 1] = table.concat(failed, ' ', 2)
  end
  return out
end
for _, failed in ipairs({ unknown, nocust, early, over, short }) do
  if #failed > 1 then return failed end
end
if mode == 'home' then
  if (h.ver == '' and '1' or h.ver) ~= argv[5] then return { 'conflict' } end
  if now - tonumber(argv[7]) > tonumber(argv[8]) then return { 'too_late' } end
end

if #writes > 0 then
  redis.call('HSET', base .. 'avail', unpack(writes))
  for k = 1, #writes, 2 do ev_touch(base, writes[k]) end
end
if #pwrites > 0 then redis.call('HSET', pool_key, unpack(pwrites)) end
for _, c in ipairs(cust_changes) do
  if redis.call('HINCRBY', cust_key, c[1], c[2]) <= 0 then
    redis.call('HDEL', cust_key, c[1])
  end
end
-- Lines keep their basket order; new SKUs go to the end.
local out_s, out_q, out_c = {}, {}, {}
local function keep(sku, q)
  if q > 0 then
    out_s[#out_s + 1] = sku
    out_q[#out_q + 1] = int(q)
    if counted[sku] then out_c[#out_c + 1] = sku end
  end
end
for i, sku in ipairs(skus) do
  local q = new_qty[sku]
  if q == nil then q = qty(qtys[i]) end
  keep(sku, q)
end
for i = 1, n do
  local sku = argv[sku0 + i]
  if not at[sku] and new_qty[sku] then keep(sku, new_qty[sku]) end
end
h.skus, h.qtys, h.counted = table.concat(out_s, ' '), table.concat(out_q, ' '), table.concat(out_c, ' ')
h.pq = pq_of(from_pool, out_s, out_q)
if argv[3] ~= '' then
  h.ea = int(now + tonumber(argv[3]))
  redis.call('ZADD', base .. 'exp', h.ea, id)
end
if mode == 'home' then
  h.ver, h.parts, h.basket = argv[6], argv[9], argv[10]
elseif h.basket ~= '' then
  -- A change here alone of a basket over several partitions: SKUs new to
  -- the basket join its order at the end.
  local known = {}
  for sku in string.gmatch(h.basket, '%S+') do known[sku] = true end
  local order = { h.basket }
  for _, sku in ipairs(out_s) do
    if not known[sku] then order[#order + 1] = sku end
  end
  h.basket = table.concat(order, ' ')
end
return { 'ok', write_hold(key, h) }
