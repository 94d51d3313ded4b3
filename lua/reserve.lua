-- reserve.lua: holds every line of a basket, or nothing.
--
-- KEYS[1]  hold key (base.."hold:"..id); must not exist yet
-- ARGV[1]  base prefix "<prefix>:{p0}:"
-- ARGV[2]  hold id
-- ARGV[3]  lines "sku qty sku qty ..." (distinct SKUs, qty >= 1)
-- ARGV[4]  ttl in ms
-- ARGV[5]  customer id ('' = none)
-- ARGV[6]  channel ('' = none)
-- ARGV[7]  allow_partial: '1' or '0'
--
-- Returns one of
--   {'not_ready'}  Redis lost its data and is not rebuilt yet (nothing done)
--   {'ok', st, cust, chan, ca, ea, ln, oid, cat, pref, shortages}
--        shortages = "sku requested available ..." of lines held short
--   {'exists'}                             the hold id is taken (idempotent retry)
--   {'unknown_sku', sku, ...}
--   {'customer_required', sku, ...}        SKUs with a per-customer limit
--   {'sale_not_started', sku, starts_ms, ...}
--   {'limit_exceeded', sku, limit, already, requested, ...}
--   {'insufficient', sku, requested, available, ...}
-- Checks come first; nothing is written unless every check passed.
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
if redis.call('EXISTS', key) == 1 then
  return { 'exists' }
end
local cust, chan, partial = ARGV[5], ARGV[6], ARGV[7] == '1'
local cust_key = base .. 'cust:' .. cust
local now = now_ms()

local unknown, nocust = { 'unknown_sku' }, { 'customer_required' }
local early, over, short = { 'sale_not_started' }, { 'limit_exceeded' }, { 'insufficient' }
local plan, short_text = {}, {}
for _, l in ipairs(parse_pairs(ARGV[3])) do
  local sku, q = l[1], l[2]
  local v = redis.call('HMGET', base .. 'sku:' .. sku, 'on_hand', 'held', 'bo', 'pcl', 'ssa')
  if not v[1] then
    unknown[#unknown + 1] = sku
  else
    local ssa, pcl = tonumber(v[5]), tonumber(v[4])
    if ssa and ssa > now then
      early[#early + 1] = sku
      early[#early + 1] = int(ssa)
    end
    local counted = 0
    if pcl then
      if cust == '' then
        nocust[#nocust + 1] = sku
      else
        local already = tonumber(redis.call('HGET', cust_key, sku) or '0')
        if already + q > pcl then
          for _, x in ipairs({ sku, pcl, already, q }) do over[#over + 1] = x end
        end
        counted = 1
      end
    end
    local avail = tonumber(v[1]) - tonumber(v[2]) + tonumber(v[3])
    if avail < 0 then avail = 0 end
    local take = q
    if q > avail then
      for _, x in ipairs({ sku, q, avail }) do short[#short + 1] = x end
      short_text[#short_text + 1] = sku .. ' ' .. int(q) .. ' ' .. int(avail)
      take = avail
    end
    if take > 0 then
      plan[#plan + 1] = { sku, take, counted }
    end
  end
end
for _, failed in ipairs({ unknown, nocust, early, over }) do
  if #failed > 1 then return failed end
end
if #short > 1 and (not partial or #plan == 0) then
  return short
end

for _, p in ipairs(plan) do
  redis.call('HINCRBY', base .. 'sku:' .. p[1], 'held', p[2])
  if p[3] == 1 then
    redis.call('HINCRBY', cust_key, p[1], p[2])
  end
end
local h = { st = 'held', cust = cust, chan = chan, ca = int(now),
  ea = int(now + tonumber(ARGV[4])), ln = encode_hold_lines(plan), oid = '', cat = '', pref = '' }
redis.call('HSET', key, 'st', h.st, 'cust', h.cust, 'chan', h.chan, 'ca', h.ca, 'ea', h.ea, 'ln', h.ln)
redis.call('ZADD', base .. 'exp', h.ea, id)
local reply = hold_reply(h)
reply[#reply + 1] = table.concat(short_text, ' ')
return reply
