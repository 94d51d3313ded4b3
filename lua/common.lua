-- common.lua: helpers prepended to every other script when it is loaded (see
-- src/engine/scripts.rs). Defines functions only; touches no keys by itself.
--
-- Key layout, all under one partition prefix `base` = "<prefix>:{p0}:" so that
-- every key a script touches hashes to the same Redis Cluster slot:
--   base.."sku:"..sku     hash  on_hand, held, bo (backorder limit),
--                               pcl (per-customer limit, absent = none),
--                               ssa (sale starts at, ms, absent = none)
--   base.."hold:"..id     hash  st (held|committed|released|expired), cust, chan,
--                               ca (created ms), ea (expires ms), ln (lines),
--                               oid, cat (committed ms), pref (payment ref)
--   base.."exp"           zset  hold id scored by expires_at ms (the reaper's queue)
--   base.."cust:"..cust   hash  sku -> units held + bought by that customer
--                               (only lines of SKUs with a per-customer limit)
--   base.."order:"..oid   string  hold id of the order (order ids are unique)
--   base.."outbox"        stream  every change of on_hand, for the ledger
--   base.."ready"         string  set once Redis has been rebuilt from the
--                               ledger; a Redis that lost its data lacks it,
--                               and every write script then refuses to run
--   base.."marks:"..id    string  adjustment / return ids already applied
--
-- Hold lines `ln` are "sku qty counted sku qty counted ..." where counted is 1
-- when the line is counted in the customer's per-SKU total. SKUs never contain
-- spaces (the API restricts them to A-Z a-z 0-9 . _ : -).

-- Ended holds stay readable this long (the API promises at least 24 h).
local ENDED_TTL_MS = 25 * 3600 * 1000
-- Order id index entries outlive the hold so a reused order id is refused.
local ORDER_TTL_MS = 8 * 24 * 3600 * 1000

-- Whether this Redis holds the rebuilt state; write scripts start with
--   if not ready(base) then return { 'not_ready' } end
local function ready(base)
  return redis.call('EXISTS', base .. 'ready') == 1
end

local function int(x)
  return string.format('%d', x)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- "a 2 b 1" -> { {'a', 2}, {'b', 1} }
local function parse_pairs(s)
  local out = {}
  for sku, q in string.gmatch(s, '(%S+) (%d+)') do
    out[#out + 1] = { sku, tonumber(q) }
  end
  return out
end

-- "a 2 1 b 1 0" -> { {'a', 2, 1}, {'b', 1, 0} }
local function parse_hold_lines(s)
  local out = {}
  for sku, q, c in string.gmatch(s or '', '(%S+) (%d+) (%d)') do
    out[#out + 1] = { sku, tonumber(q), tonumber(c) }
  end
  return out
end

local function encode_hold_lines(lines)
  local parts = {}
  for _, l in ipairs(lines) do
    parts[#parts + 1] = l[1] .. ' ' .. int(l[2]) .. ' ' .. int(l[3])
  end
  return table.concat(parts, ' ')
end

local HOLD_FIELDS = { 'st', 'cust', 'chan', 'ca', 'ea', 'ln', 'oid', 'cat', 'pref' }

-- Reads a hold; nil when it does not exist.
local function read_hold(key)
  local v = redis.call('HMGET', key, unpack(HOLD_FIELDS))
  if not v[1] then
    return nil
  end
  local h = {}
  for i, f in ipairs(HOLD_FIELDS) do
    h[f] = v[i] or ''
  end
  return h
end

-- The reply every hold operation returns on success:
-- {'ok', st, cust, chan, ca, ea, ln, oid, cat, pref}
local function hold_reply(h)
  return { 'ok', h.st, h.cust, h.chan, h.ca, h.ea, h.ln, h.oid, h.cat, h.pref }
end

-- Gives a held hold's units back and ends it as `state` (released|expired).
local function end_hold(base, key, id, h, state)
  local cust_key = base .. 'cust:' .. h.cust
  for _, l in ipairs(parse_hold_lines(h.ln)) do
    redis.call('HINCRBY', base .. 'sku:' .. l[1], 'held', -l[2])
    if l[3] == 1 then
      if redis.call('HINCRBY', cust_key, l[1], -l[2]) <= 0 then
        redis.call('HDEL', cust_key, l[1])
      end
    end
  end
  redis.call('HSET', key, 'st', state)
  redis.call('ZREM', base .. 'exp', id)
  redis.call('PEXPIRE', key, ENDED_TTL_MS)
  h.st = state
end

-- A held hold whose time has run out is expired on the spot, so no operation
-- ever acts on it while it waits for the reaper. Returns true if it expired.
local function expire_if_due(base, key, id, h, now)
  if h.st == 'held' and tonumber(h.ea) <= now then
    end_hold(base, key, id, h, 'expired')
    return true
  end
  return false
end
