-- stage.lua: the first step of a change to a basket over several partitions,
-- in one partition that is not the basket's home: takes the units the change
-- adds here (all checks first), and keeps the change pending until the home
-- has decided (finish_stage.lua confirms or undoes it). Creates the part if
-- the basket has none here yet. Units the change gives back are given back
-- only on confirmation, so an undo never needs units that may be gone.
--
-- KEYS[1]  the part's key (base.."hold:"..id)
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  the home partition's number
-- ARGV[4]  the change: "version:token" (version = the home's version + 1)
-- ARGV[5]  in how many ms the reaper asks the home about this part if
--          nobody has finished the change by then
-- ARGV[6]  customer id, ARGV[7] channel (for a new part)
-- ARGV[8]  allow_partial ('1': a new part holds what is available)
-- ARGV[9]  number of lines n, then n SKUs and n new quantities (0 removes)
--
-- Returns one of
--   {'not_ready'}
--   {'ok', record, ms, shortages}  staged (or staged before by this change);
--        ms is when this change was staged here; shortages "sku requested
--        available ..." of lines held short (allow_partial)
--   {'nothing', shortages}  allow_partial and no line can be held here
--        (no part is made)
--   {'busy'}       another change of this basket is pending here
--   {'expired'} | {'released'} | {'committed'} | {'committing'}
--   the refusals of reserve.lua ('unknown_sku', 'customer_required',
--   'sale_not_started', 'limit_exceeded', 'insufficient')
local argv = ARGV
local base, id, key = argv[1], argv[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local change = argv[4]
local h = read_hold(key)
local now = now_ms()
if h then
  if h.pv == change then
    -- Staged before by this change: when (the change names its start).
    return { 'ok', encode_hold(h), string.match(change, ':(%d+)$') or int(now), '' }
  end
  if h.pv ~= '' then return { 'busy' } end
  if h.st ~= 'held' then return { h.st } end
else
  h = { st = 'held', cust = argv[6], chan = argv[7], ca = int(now), ea = int(now + tonumber(argv[5])), oid = '',
    cat = '', pref = '', counted = '', skus = '', qtys = '', home = argv[3], parts = '',
    basket = '', ver = '0', pv = '', chg = '', pq = '', pqo = '' }
end
local partial = argv[8] == '1' and h.skus == ''

local n = tonumber(argv[9])
local sku0, q0 = 9, 9 + n
local skus, qtys, counted = hold_lines(h)
local at = {}
for i, sku in ipairs(skus) do at[sku] = i end
local cust_key = base .. 'cust:' .. h.cust
local avail = redis.call('HMGET', base .. 'avail', unpack(argv, sku0 + 1, sku0 + n))
local rules = read_rules(base, argv, sku0 + 1, sku0 + n)
-- A line that grows takes from the channel's allocation first; an undo
-- gives back what the stage took (pqo keeps pq as it was).
local pools, pool_key = read_pools(base, h.chan, argv, sku0 + 1, sku0 + n)
local from_pool = pooled(h)
local pq_before = pq_of(from_pool, words(h.skus)) -- (never '*': the lines change)
local pwrites = {} -- the allocations' (pavail) field/value pairs

local unknown, nocust = { 'unknown_sku' }, { 'customer_required' }
local early, over, short = { 'sale_not_started' }, { 'limit_exceeded' }, { 'insufficient' }
local fails = { early = early, nocust = nocust, over = over }
local writes, cust_changes, chg, shortages = {}, {}, {}, {}
for i = 1, n do
  local sku, q = argv[sku0 + i], qty(argv[q0 + i])
  local old = at[sku] and qty(qtys[at[sku]]) or 0
  local up = q - old
  if up > 0 then
    local a = avail[i]
    if not a then
      unknown[#unknown + 1] = sku
    else
      local rule = rules and rules[i]
      local was_counted = counted[sku]
      local counts = rule and check_rule(rule, sku, was_counted and up or q, now, h.cust,
        cust_key, fails)
      local have = a + 0
      if have < 0 then have = 0 end
      local pa = pools and pools[i] and tonumber(pools[i]) or 0
      local p = pa > up and up or (pa > 0 and pa or 0)
      if up - p > have then
        if partial then
          shortages[#shortages + 1] = sku .. ' ' .. int(q) .. ' ' .. int(have + p)
          up, q = have + p, old + have + p
        else
          for _, x in ipairs({ sku, q, have + p + old }) do short[#short + 1] = x end
        end
      end
      -- What the customer's count gains: the units taken (a partial line
      -- counts what it holds, not what was asked for).
      local gain = was_counted and up or q
      if counts and gain > 0 then
        cust_changes[#cust_changes + 1] = { sku, gain }
        counted[sku] = true
      end
      if up > 0 then
        writes[#writes + 1] = sku
        writes[#writes + 1] = int(a - (up - p))
        if p > 0 then
          pwrites[#pwrites + 1] = sku
          pwrites[#pwrites + 1] = int(pa - p)
          from_pool[sku] = (from_pool[sku] or 0) + p
        end
      end
    end
  end
  if q ~= old then
    chg[#chg + 1] = sku .. ' ' .. int(old) .. ' ' .. int(q)
    if not at[sku] and q > old then
      skus[#skus + 1], qtys[#qtys + 1] = sku, int(q)
      at[sku] = #skus
    elseif at[sku] and q > old then
      qtys[at[sku]] = int(q)
    end
  end
end
for _, failed in ipairs({ unknown, nocust, early, over, short }) do
  if #failed > 1 then return failed end
end
if #chg == 0 and h.skus == '' and h.ver == '0' then
  -- A new part with nothing to hold (every line short, allow_partial).
  return { 'nothing', table.concat(shortages, ' ') }
end

if #writes > 0 then
  redis.call('HSET', base .. 'avail', unpack(writes))
  for k = 1, #writes, 2 do ev_touch(base, writes[k]) end
end
if #pwrites > 0 then redis.call('HSET', pool_key, unpack(pwrites)) end
for _, c in ipairs(cust_changes) do
  redis.call('HINCRBY', cust_key, c[1], c[2])
end
set_lines(h, skus, qtys, counted)
h.pv, h.chg = change, table.concat(chg, ' ')
h.pq, h.pqo = pq_of(from_pool, words(h.skus), words(h.qtys)), pq_before
note_change(key)
redis.call('SET', key, encode_hold(h))
-- The reaper asks the home about this part by then at the latest.
local due = now + tonumber(argv[5])
if h.ver ~= '0' and tonumber(h.ea) < due then due = tonumber(h.ea) end
redis.call('ZADD', base .. 'exp', due, id)
return { 'ok', encode_hold(h), int(now), table.concat(shortages, ' ') }
