-- patch.lua: sets the quantity of named SKUs in a held hold and/or restarts
-- its TTL; all-or-nothing. The hold's own units count in its favour.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  lines "sku qty ..." (distinct SKUs, qty >= 0; 0 removes the line)
-- ARGV[4]  new ttl in ms, or '' to keep expires_at
--
-- Returns one of
--   {'not_ready'}  Redis lost its data and is not rebuilt yet (nothing done)
--   {'ok', st, cust, chan, ca, ea, ln, oid, cat, pref}
--   {'not_found'} | {'expired'} | {'released'} | {'committed'}
--   {'unknown_sku', sku, ...} | {'customer_required', sku, ...}
--   {'sale_not_started', sku, starts_ms, ...}
--   {'limit_exceeded', sku, limit, already, requested, ...}
--   {'insufficient', sku, requested, available, ...}
-- A hold found past its expiry is expired on the spot (units returned) and
-- 'expired' is returned; otherwise nothing is written unless all checks pass.
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'not_found' } end
local now = now_ms()
if expire_if_due(base, key, id, h, now) then return { 'expired' } end
if h.st ~= 'held' then return { h.st } end

local cust = h.cust
local cust_key = base .. 'cust:' .. cust
local current, order = {}, {}
for _, l in ipairs(parse_hold_lines(h.ln)) do
  current[l[1]] = l
  order[#order + 1] = l[1]
end

local unknown, nocust = { 'unknown_sku' }, { 'customer_required' }
local early, over, short = { 'sale_not_started' }, { 'limit_exceeded' }, { 'insufficient' }
local changes = {} -- { sku, delta_held, delta_customer, new_line_or_nil }
for _, l in ipairs(parse_pairs(ARGV[3])) do
  local sku, q = l[1], l[2]
  local old = current[sku]
  local old_q = old and old[2] or 0
  local counted = old and old[3] or 0
  local delta = q - old_q
  if delta > 0 then
    local v = redis.call('HMGET', base .. 'sku:' .. sku, 'on_hand', 'held', 'bo', 'pcl', 'ssa')
    if not v[1] then
      unknown[#unknown + 1] = sku
    else
      local ssa, pcl = tonumber(v[5]), tonumber(v[4])
      if ssa and ssa > now then
        early[#early + 1] = sku
        early[#early + 1] = int(ssa)
      end
      -- A line held before the SKU got a limit is counted in full from now on.
      local cust_delta = 0
      if pcl then
        if cust == '' then
          nocust[#nocust + 1] = sku
        else
          cust_delta = counted == 1 and delta or q
          local already = tonumber(redis.call('HGET', cust_key, sku) or '0')
          if already + cust_delta > pcl then
            for _, x in ipairs({ sku, pcl, already, cust_delta }) do over[#over + 1] = x end
          end
          counted = 1
        end
      end
      local avail = tonumber(v[1]) - tonumber(v[2]) + tonumber(v[3])
      if avail < 0 then avail = 0 end
      if delta > avail then
        for _, x in ipairs({ sku, q, avail + old_q }) do short[#short + 1] = x end
      end
      changes[#changes + 1] = { sku, delta, cust_delta, { sku, q, counted } }
    end
  elseif delta < 0 or (old and q == 0) then
    local cust_delta = counted == 1 and delta or 0
    changes[#changes + 1] = { sku, delta, cust_delta, q > 0 and { sku, q, counted } or nil }
  end
end
for _, failed in ipairs({ unknown, nocust, early, over, short }) do
  if #failed > 1 then return failed end
end

for _, c in ipairs(changes) do
  local sku = c[1]
  if c[2] ~= 0 then
    redis.call('HINCRBY', base .. 'sku:' .. sku, 'held', c[2])
  end
  if c[3] ~= 0 then
    if redis.call('HINCRBY', cust_key, sku, c[3]) <= 0 then
      redis.call('HDEL', cust_key, sku)
    end
  end
  if not current[sku] then
    order[#order + 1] = sku
  end
  current[sku] = c[4]
end
local lines = {}
for _, sku in ipairs(order) do
  if current[sku] then lines[#lines + 1] = current[sku] end
end
h.ln = encode_hold_lines(lines)
if ARGV[4] ~= '' then
  h.ea = int(now + tonumber(ARGV[4]))
  redis.call('ZADD', base .. 'exp', h.ea, id)
end
redis.call('HSET', key, 'ln', h.ln, 'ea', h.ea)
return hold_reply(h)
