-- common.lua: helpers prepended to every other script when it is loaded (see
-- src/engine/scripts.rs). Defines functions only; touches no keys by itself.
--
-- Key layout, all under one partition's prefix `base` = "<prefix>:{pN}:" so
-- that every key a script touches hashes to the same Redis Cluster slot:
--   base.."avail"         hash  sku -> available = on_hand - held + backorder
--                               limit; the one counter a reserve reads and
--                               writes (a field exists for every SKU set up)
--   base.."onhand"        hash  sku -> on_hand
--   base.."bo"            hash  sku -> backorder limit (only when not 0)
--   base.."rules"         hash  sku -> "pcl ssa": per-customer limit and sale
--                               start in ms, '-' for none (only SKUs with one)
--   base.."hold:"..id     string  the hold's record in this partition (see
--                               read_hold): its home record, or a part
--   base.."exp"           zset  hold id scored by expires_at ms (the reaper's
--                               queue); a part is scored by when the reaper
--                               must ask its home about it
--   base.."committing"    zset  home holds whose commit over several
--                               partitions is under way, by start ms
--   base.."cust:"..cust   hash  sku -> units held + bought by that customer
--                               (only lines of SKUs with a per-customer limit)
--   base.."order:"..oid   string  hold id of the order (order ids are unique;
--                               the entry lives in the order id's partition)
--   base.."outbox"        stream  every change of on_hand, for the ledger
--   base.."ready"         string  set once the partition has been rebuilt
--                               from the ledger, to the run id of the Redis
--                               server rebuilt; a partition that lost its
--                               data lacks it, and every write script then
--                               refuses to run
--   base.."rebuild-lock"  string  the rebuild lease: the owner's id, with a
--                               short TTL the owner renews (lua/lease.lua)
--   base.."lost-at"       string  ms of the last rebuild that may have lost
--                               holds (restart, failover, data loss)
--   base.."marks:"..id    string  adjustment / return / transfer ids already
--                               applied
--   base.."bk"            hash  sku -> "buckets span" of a SKU spread over
--                               several partitions (hot-SKU buckets), in its
--                               own partition only (its bucket 0); bucket b
--                               is partition (own + b) mod partitions, with
--                               the SKU's own avail/onhand/rules fields there
--   base.."bkat"          hash  sku -> ms its buckets last changed (bucket 0)
--   base.."pools"         hash  sku -> "safety chan ...": its safety stock
--                               (units no reservation may hold) and the
--                               channels with an allocation (only SKUs with
--                               either). The SKU's own avail field is then
--                               its shared pool's: on_hand - the shares -
--                               safety + backorder - held from it
--   base.."low"           hash  sku -> low-stock threshold (only SKUs with one)
--   base.."stock"         hash  sku -> 'out' | 'low': its stock state as the
--                               events last told it (see flush_events)
--   base.."events"        stream  what happened to stock (see flush_events)
--   base.."inbk"          hash  sku -> '1' for SKUs this partition is a
--                               bucket >= 1 of
--   base.."pavail:"..chan  hash  sku -> what is available of chan's
--                               allocation of the SKU (share - held from it)
--   base.."pshare:"..chan  hash  sku -> chan's share of the SKU's on_hand
--   base.."xfer"          hash  transfer id -> "sku units to": units taken
--                               here for another bucket, not yet given
--   base.."xfers"         zset  those transfer ids by when they were taken
--   base.."moving"        never exists: see fence()
--   base.."watches"       zset  token of each reconciliation reading the
--                               live holds -> ms it is abandoned after
--   base.."touched:"..token  hash  hold key -> its record as it was when
--                               that watch began ('' = none), for every
--                               hold changed since (see note_change)
--
-- `held` is not stored: it is on_hand + backorder limit - available. A
-- reserve touches one field per line (avail), a commit one (onhand: on_hand
-- and held drop together, so available stays), a release one (avail).
--
-- A basket whose SKUs live in several partitions has a record in each: the
-- home record (in the partition its id names) decides its status, expiry
-- and version; each other partition keeps a part with its own lines. A part
-- is changed in two steps: staged (units taken, the change and its version
-- kept in `pv`/`chg`), then confirmed or undone once the home has decided.
--
-- SKUs never contain spaces (the API restricts them to A-Z a-z 0-9 . _ : -),
-- and customer ids, channels, order ids and payment references never contain
-- control characters, so the hold record separates its fields with \31.

-- Ended holds stay readable this long (the API promises at least 24 h).
local ENDED_TTL_MS = 25 * 3600 * 1000
-- Order id index entries outlive the hold so a reused order id is refused.
local ORDER_TTL_MS = 8 * 24 * 3600 * 1000
-- A reconciliation's watch (see note_change) lapses this long after its
-- last batch unless renewed.
local WATCH_TTL_MS = 60 * 1000

local fmt = string.format

-- Stops the script, before it reads or writes anything, while the
-- partition's slot is being moved between Redis Cluster nodes: the key
-- base.."moving" never exists, and touching a missing key of a slot under
-- migration fails inside a script (ASK on the node the slot leaves, TRYAGAIN
-- on the one it goes to, for a command of several keys). Without it a
-- script could write some keys and then fail on one already moved, or run
-- on the new node against keys not yet there. The service retries the call
-- once the slot has moved. On a single Redis it is one EXISTS, and every
-- script calls it first (through ready or leased, or directly).
local function fence(base)
  return redis.call('EXISTS', base .. 'ready', base .. 'moving')
end

-- Whether this Redis holds the rebuilt state; write scripts start with
--   if not ready(base) then return { 'not_ready' } end
local function ready(base)
  return fence(base) == 1
end

-- Whether `owner` holds the rebuild lease: the scripts that rebuild fence
-- their writes with it, so a rebuilder that stalled and lost its lease to
-- another changes nothing when it wakes up.
local function leased(base, owner)
  fence(base)
  return redis.call('GET', base .. 'rebuild-lock') == owner
end

local function int(x)
  return fmt('%d', x)
end

-- The time the call last read (its events are stamped with it).
local last_now = nil

local function now_ms()
  local t = redis.call('TIME')
  last_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return last_now
end

-- Quantities of most lines are small: a table lookup is cheaper than
-- parsing the number.
-- (A literal: this file runs before every script call.)
local SMALL = { ['0'] = 0, ['1'] = 1, ['2'] = 2, ['3'] = 3, ['4'] = 4, ['5'] = 5,
  ['6'] = 6, ['7'] = 7, ['8'] = 8, ['9'] = 9, ['10'] = 10 }
local function qty(s)
  return SMALL[s] or tonumber(s)
end

-- "a b c" -> { 'a', 'b', 'c' }
local function words(s)
  local out = {}
  for w in string.gmatch(s, '%S+') do
    out[#out + 1] = w
  end
  return out
end

-- The hold record: st cust chan ca ea oid cat pref counted skus qtys, then
-- for baskets over several partitions: home parts basket ver pv chg, then
-- pq pqo; joined by \31 (trailing empty fields are left out). st is held | committing |
-- committed | released | expired; ca, ea, cat are ms; counted lists the SKUs
-- whose units count in the customer's total; skus and qtys list this
-- partition's lines in basket order. home is '' in a home record, else the
-- home partition's number; parts (home only) the other partitions; basket
-- (home only, when it has parts) every SKU of the basket in basket order;
-- ver the confirmed version; pv (parts only) "version:token" of a staged
-- change, chg its "sku old new ..." (the lines hold the larger of old, new).
-- pq "sku n ...": the units of each line held from the allocation of the
-- hold's channel (the rest of the line is held from the shared pool), or
-- '*': every line in full; pqo pq as it was before a staged change (parts
-- only, while one is pending).
local FIELDS = { 'st', 'cust', 'chan', 'ca', 'ea', 'oid', 'cat', 'pref', 'counted', 'skus', 'qtys',
  'home', 'parts', 'basket', 'ver', 'pv', 'chg', 'pq', 'pqo' }

-- Each hold record as this script call first read it (key -> record, or
-- false when there was none): what note_change keeps.
local READ = {}

-- A reconciliation reads a partition's live holds outside any script and
-- then compares each batch of SKUs in one script (src/engine/recovery.rs,
-- hold_index). It must know every hold as it was when it began to read:
-- while its watch is on (base.."watches", see watch.lua), every script
-- that changes a hold first keeps the hold's record of that moment in the
-- watch's base.."touched:"..token (once per hold: the first change keeps
-- it), and each batch counts those holds as they are now instead. With no
-- watch on it costs one ZRANGE of an empty key a write.
local function note_change(key)
  local base = string.match(key, '^(.*)hold:[^:]*$')
  local on = redis.call('ZRANGE', base .. 'watches', 0, -1)
  if #on == 0 then return end
  local before = READ[key]
  if before == nil then before = redis.call('GET', key) or false end
  for _, token in ipairs(on) do
    redis.call('HSETNX', base .. 'touched:' .. token, key, before or '')
  end
end

-- Events (base.."events", a stream per partition): what happened to stock,
-- written by the script call that made it happen, once its body has run
-- (flush_events; src/engine/scripts.rs runs every script's body as a
-- function and calls it after). A call notes what it changed: write_hold
-- notes each hold record it writes, ev_count (add_to, reserve) and
-- ev_touch each SKU whose available count it changes, ev_add any other
-- event. flush_events then compares each hold's record as the call first
-- read it with the one it left, and each SKU's available count with its
-- stock state.
local EV = { base = false, keys = {}, recs = {}, skus = {}, seen = {}, extra = {}, quiet = false,
  before = {}, after = {} }

-- Notes that SKU `sku`'s available count (of partition `base`) may have
-- changed.
local function ev_touch(base, sku)
  EV.base = base
  if not EV.seen[sku] then
    EV.seen[sku] = true
    EV.skus[#EV.skus + 1] = sku
  end
end

-- Notes that SKU `sku`'s available count went from `before` (as the call
-- first found it; nil: unknown) to `after`: flush_events then needs no
-- read of either.
local function ev_count(base, sku, before, after)
  ev_touch(base, sku)
  if EV.before[sku] == nil then EV.before[sku] = before and tonumber(before) or false end
  EV.after[sku] = after
end

-- Notes an event of type `t` about SKU `sku` with more fields
-- { name, value, ... }; flush_events adds its time and the SKU's
-- available count after the call.
local function ev_add(base, t, sku, fields)
  if sku ~= '' then ev_touch(base, sku) end
  EV.base = base
  EV.extra[#EV.extra + 1] = { t = t, sku = sku, fields = fields }
end

-- A hold record's fields (see FIELDS).
local function parse_hold(rec)
  local h, i, from = {}, 1, 1
  while true do
    local at = string.find(rec, '\31', from, true)
    if not at then
      h[FIELDS[i]] = string.sub(rec, from)
      break
    end
    h[FIELDS[i]] = string.sub(rec, from, at - 1)
    i, from = i + 1, at + 1
  end
  for k = i + 1, #FIELDS do h[FIELDS[k]] = '' end
  return h
end

-- Reads a hold; nil when it does not exist.
local function read_hold(key)
  local rec = redis.call('GET', key)
  if READ[key] == nil then READ[key] = rec or false end
  if not rec then
    return nil
  end
  return parse_hold(rec)
end

local function encode_hold(h)
  local last = 11
  for k = #FIELDS, 12, -1 do
    if h[FIELDS[k]] ~= '' then last = k break end
  end
  local out = {}
  for k = 1, last do out[k] = h[FIELDS[k]] end
  return table.concat(out, '\31')
end

-- The version number of "version:token" ('' -> 0).
local function version_of(pv)
  return tonumber(string.match(pv, '^(%d+)') or '0')
end

-- Writes a held hold (no TTL: the reaper ends it) or an ended one (kept
-- readable for ENDED_TTL_MS). Returns the record written.
local function write_hold(key, h)
  note_change(key)
  if READ[key] == nil then READ[key] = redis.call('GET', key) or false end
  local rec = encode_hold(h)
  if EV.recs[key] == nil then EV.keys[#EV.keys + 1] = key end
  EV.base = string.match(key, '^(.*)hold:[^:]*$')
  EV.recs[key] = rec
  if h.st == 'held' or h.st == 'committing' then
    redis.call('SET', key, rec)
  else
    redis.call('SET', key, rec, 'PX', ENDED_TTL_MS)
  end
  return rec
end

-- The hold's lines as two lists, and the set of counted SKUs.
local function hold_lines(h)
  local counted = {}
  for s in string.gmatch(h.counted, '%S+') do counted[s] = true end
  return words(h.skus), words(h.qtys), counted
end

-- The units of each line of `h` held from the channel's allocation:
-- sku -> n (pq of `h`, or pqo with `before`).
local function pooled(h, before)
  local pq = before and h.pqo or h.pq
  local t = {}
  if pq == '*' then
    local skus, qtys = words(h.skus), words(h.qtys)
    for i, s in ipairs(skus) do t[s] = qty(qtys[i]) end
  elseif pq ~= '' then
    for s, n in string.gmatch(pq, '(%S+) (%d+)') do t[s] = tonumber(n) end
  end
  return t
end

-- `t` (sku -> n) as the record's pq, for the lines `skus` in their order;
-- '*' when each line (quantities `qtys`, if given) is held in full from
-- the allocation.
local function pq_of(t, skus, qtys)
  local out, all = {}, qtys ~= nil and #skus > 0
  for i, s in ipairs(skus) do
    local n = t[s]
    if n and n > 0 then out[#out + 1] = s .. ' ' .. int(n) end
    if all and n ~= qty(qtys[i]) then all = false end
  end
  if all then return '*' end
  return table.concat(out, ' ')
end

-- The hashes of channel `chan`'s allocations: what is available of each,
-- and each one's share of on_hand.
local function pool_keys(base, chan)
  return base .. 'pavail:' .. chan, base .. 'pshare:' .. chan
end

-- The ledger's name of channel `chan`'s allocation of `sku`.
local function pool_account(sku, chan)
  return sku .. '@' .. chan
end

-- Sells every line of a held hold: on_hand drops by each line's qty (held
-- drops with it, so available stays), and so does the share of the
-- channel's allocation by the units held from it, in two calls however
-- many lines (two more with allocations). Returns the sale as the outbox
-- carries it: "sku qty on_hand_after ...", and the allocations' part
-- "sku@chan n share_after ..." ('' when none).
local function sell_lines(base, h)
  local skus, qtys = hold_lines(h)
  if #skus == 0 then return '', '' end
  local onhand_key = base .. 'onhand'
  local on_hand = redis.call('HMGET', onhand_key, unpack(skus))
  local writes, sold = {}, {}
  for i, sku in ipairs(skus) do
    local after = int((tonumber(on_hand[i]) or 0) - qty(qtys[i]))
    writes[#writes + 1] = sku
    writes[#writes + 1] = after
    sold[#sold + 1] = sku .. ' ' .. qtys[i] .. ' ' .. after
  end
  redis.call('HSET', onhand_key, unpack(writes))
  if h.pq == '' then return table.concat(sold, ' '), '' end
  local from_pool = pooled(h)
  local pools = {}
  for _, sku in ipairs(skus) do
    if from_pool[sku] then pools[#pools + 1] = sku end
  end
  if #pools == 0 then return table.concat(sold, ' '), '' end
  local _, share_key = pool_keys(base, h.chan)
  local shares = redis.call('HMGET', share_key, unpack(pools))
  local pwrites, pool_sold = {}, {}
  for k, sku in ipairs(pools) do
    local n = from_pool[sku]
    local after = int((tonumber(shares[k]) or 0) - n)
    pwrites[#pwrites + 1] = sku
    pwrites[#pwrites + 1] = after
    pool_sold[#pool_sold + 1] = pool_account(sku, h.chan) .. ' ' .. int(n) .. ' ' .. after
  end
  redis.call('HSET', share_key, unpack(pwrites))
  return table.concat(sold, ' '), table.concat(pool_sold, ' ')
end

-- Adds `delta[sku]` to the count of every SKU in `skus` in hash `key`, in
-- two calls however many SKUs.
local function add_to(key, skus, delta)
  if #skus == 0 then return end
  local base = string.match(key, '^(.*}:)avail$')
  local now = redis.call('HMGET', key, unpack(skus))
  local out = {}
  for i, sku in ipairs(skus) do
    out[#out + 1] = sku
    out[#out + 1] = int((tonumber(now[i]) or 0) + delta[sku])
    if base then ev_count(base, sku, now[i], out[#out]) end
  end
  redis.call('HSET', key, unpack(out))
end

-- Units to give back: back[key] = { skus = {...}, n = { sku -> units } }
-- per hash of available counts (the SKUs' own, or a channel's pavail).
local function give(back, key, sku, n)
  if n <= 0 then return end
  local g = back[key]
  if not g then
    g = { skus = {}, n = {} }
    back[key] = g
  end
  if not g.n[sku] then
    g.n[sku] = 0
    g.skus[#g.skus + 1] = sku
  end
  g.n[sku] = g.n[sku] + n
end

-- Gives back what `back` collected (see give).
local function give_all(back)
  for key, g in pairs(back) do add_to(key, g.skus, g.n) end
end

-- Collects the units a held hold gives back into `back` (see give: each
-- line's units go back to the pool they came from) and takes its counted
-- lines off the customer's totals; the caller applies `back` with
-- give_all.
local function give_back(base, h, back)
  local skus, qtys, counted = hold_lines(h)
  local cust_key = base .. 'cust:' .. h.cust
  local from_pool = pooled(h)
  local avail_key = base .. 'avail'
  local pool_key = h.pq ~= '' and pool_keys(base, h.chan)
  for i, sku in ipairs(skus) do
    local q = qty(qtys[i])
    local p = from_pool[sku] or 0
    give(back, avail_key, sku, q - p)
    if p > 0 then give(back, pool_key, sku, p) end
    if counted[sku] then
      if redis.call('HINCRBY', cust_key, sku, -q) <= 0 then
        redis.call('HDEL', cust_key, sku)
      end
    end
  end
end

-- Ends a held hold as `state` (released|expired) without giving its units
-- back yet (see give_back). Returns the record written.
local function close_hold(base, key, id, h, state)
  h.st = state
  redis.call('ZREM', base .. 'exp', id)
  return write_hold(key, h)
end

-- Gives a held hold's units back and ends it as `state`. Returns the record.
local function end_hold(base, key, id, h, state)
  local back = {}
  give_back(base, h, back)
  give_all(back)
  return close_hold(base, key, id, h, state)
end

-- Sets a hold's lines from parallel lists, dropping lines of 0 units; the
-- counted set keeps the SKUs still there.
local function set_lines(h, skus, qtys, counted)
  local s, q, c = {}, {}, {}
  for i, sku in ipairs(skus) do
    local n = qty(qtys[i])
    if n > 0 then
      s[#s + 1], q[#q + 1] = sku, int(n)
      if counted[sku] then c[#c + 1] = sku end
    end
  end
  h.skus, h.qtys, h.counted = table.concat(s, ' '), table.concat(q, ' '), table.concat(c, ' ')
end

-- Ends a part's staged change: 'confirm' keeps the new quantities (giving
-- back what went down), 'undo' the old ones (giving back what went up).
-- Units go back to the pool they came from: an undo gives back exactly
-- what the stage took (pqo is pq before it), a confirmation gives back
-- units of the shared pool first. Updates avail, the customer's totals and
-- the record (not written here).
local function settle_stage(base, h, op)
  if h.pv == '' then return end
  local skus, qtys, counted = hold_lines(h)
  local at = {}
  for i, sku in ipairs(skus) do at[sku] = i end
  local back = {}
  local cust_key = base .. 'cust:' .. h.cust
  local from_pool, before = pooled(h), pooled(h, true)
  local avail_key, pool_key = base .. 'avail', pool_keys(base, h.chan)
  local c = words(h.chg)
  for k = 1, #c, 3 do
    local sku, old, new = c[k], tonumber(c[k + 1]), tonumber(c[k + 2])
    local keep = op == 'confirm' and new or old
    local held = old > new and old or new
    if keep < held then
      local p = from_pool[sku] or 0
      local to_pool
      if op == 'confirm' then
        to_pool = held - keep - math.min(held - keep, held - p)
      else
        to_pool = p - (before[sku] or 0)
      end
      give(back, avail_key, sku, held - keep - to_pool)
      give(back, pool_key, sku, to_pool)
      from_pool[sku] = p - to_pool
      if counted[sku] and redis.call('HINCRBY', cust_key, sku, keep - held) <= 0 then
        redis.call('HDEL', cust_key, sku)
      end
    end
    if at[sku] then qtys[at[sku]] = int(keep) end
  end
  give_all(back)
  set_lines(h, skus, qtys, counted)
  h.pq, h.pqo = pq_of(from_pool, words(h.skus), words(h.qtys)), ''
  if op == 'confirm' then h.ver = int(version_of(h.pv)) end
  h.pv, h.chg = '', ''
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

-- The per-customer limit and sale start (ms) of each SKU in skus[first..last],
-- as { pcl = n|nil, ssa = n|nil } or false; nil when no SKU has any (the
-- common case costs one HLEN).
local function read_rules(base, skus, first, last)
  local key = base .. 'rules'
  if redis.call('HLEN', key) == 0 then
    return nil
  end
  local raw = redis.call('HMGET', key, unpack(skus, first, last))
  local out = {}
  for i = 1, last - first + 1 do
    local r = raw[i]
    if r then
      local pcl, ssa = string.match(r, '^(%S+) (%S+)$')
      out[i] = { pcl = tonumber(pcl), ssa = tonumber(ssa) }
    else
      out[i] = false
    end
  end
  return out
end

-- Checks the rules of one line that asks for `wanted` more units counted for
-- the customer: the sale start, and the per-customer limit (what the
-- customer holds and bought, in `cust_key`). Failures go to f.early,
-- f.nocust and f.over. Returns true when the line counts in the customer's
-- total (the SKU has a limit and a customer is named).
local function check_rule(rule, sku, wanted, now, cust, cust_key, f)
  if rule.ssa and rule.ssa > now then
    f.early[#f.early + 1] = sku
    f.early[#f.early + 1] = int(rule.ssa)
  end
  if not rule.pcl then return false end
  if cust == '' then
    f.nocust[#f.nocust + 1] = sku
    return false
  end
  local already = tonumber(redis.call('HGET', cust_key, sku) or '0')
  if already + wanted > rule.pcl then
    for _, x in ipairs({ sku, rule.pcl, already, wanted }) do f.over[#f.over + 1] = x end
  end
  return true
end

-- A SKU's pools ("safety chan ..." in base.."pools"): its safety stock and
-- the channels with an allocation, in order; 0, {} when it has none.
local function pools_of(base, sku)
  local p = redis.call('HGET', base .. 'pools', sku)
  if not p then return 0, {} end
  local w = words(p)
  local safety = tonumber(table.remove(w, 1))
  return safety, w
end

-- What is available of channel `chan`'s allocation of each SKU in
-- skus[first..last] (HMGET: false where the SKU has none), and the hash it
-- is kept in; nil when no channel is named or it has no allocation here
-- (one EXISTS).
local function read_pools(base, chan, skus, first, last)
  if chan == '' then return nil end
  local key = pool_keys(base, chan)
  if redis.call('EXISTS', key) == 0 then return nil end
  return redis.call('HMGET', key, unpack(skus, first, last)), key
end

-- A SKU's live counts and settings: avail (the shared pool's), on_hand,
-- held (every pool's), bo, pcl, ssa, low (its low-stock threshold;
-- pcl/ssa/low '' when none), safety,
-- shares (the allocations' shares added up), shared_held, and pools: per
-- allocation { chan, share, held, avail }; nil when the SKU is not set up.
local function read_sku(base, sku)
  local a = redis.call('HGET', base .. 'avail', sku)
  if not a then return nil end
  local on_hand = tonumber(redis.call('HGET', base .. 'onhand', sku) or '0')
  local bo = tonumber(redis.call('HGET', base .. 'bo', sku) or '0')
  local pcl, ssa = '', ''
  local r = redis.call('HGET', base .. 'rules', sku)
  if r then
    pcl, ssa = string.match(r, '^(%S+) (%S+)$')
    if pcl == '-' then pcl = '' end
    if ssa == '-' then ssa = '' end
  end
  local safety, chans = pools_of(base, sku)
  local pools, shares, pool_held = {}, 0, 0
  for _, chan in ipairs(chans) do
    local avail_key, share_key = pool_keys(base, chan)
    local share = tonumber(redis.call('HGET', share_key, sku) or '0')
    local pa = tonumber(redis.call('HGET', avail_key, sku) or '0')
    pools[#pools + 1] = { chan = chan, share = share, held = share - pa, avail = pa }
    shares, pool_held = shares + share, pool_held + share - pa
  end
  local a_num = tonumber(a)
  local shared_held = on_hand - shares - safety + bo - a_num
  return { avail = a_num, on_hand = on_hand, held = shared_held + pool_held, bo = bo,
    pcl = pcl, ssa = ssa, safety = safety, shares = shares, shared_held = shared_held,
    pools = pools, low = redis.call('HGET', base .. 'low', sku) or '' }
end

-- A SKU's pools as replies carry them: "safety chan share held avail ..."
-- ('' when it has neither safety stock nor allocations).
local function pools_text(v)
  if v.safety == 0 and #v.pools == 0 then return '' end
  local out = { int(v.safety) }
  for _, p in ipairs(v.pools) do
    out[#out + 1] = p.chan .. ' ' .. int(p.share) .. ' ' .. int(p.held) .. ' ' .. int(p.avail)
  end
  return table.concat(out, ' ')
end

-- A SKU's buckets and span (1 1 unless spread over several partitions).
local function buckets_of(base, sku)
  local bk = redis.call('HGET', base .. 'bk', sku)
  if not bk then return 1, 1 end
  local n, span = string.match(bk, '^(%d+) (%d+)$')
  return tonumber(n), tonumber(span)
end

-- Writes a SKU's settings: bo (0 = none), pcl and ssa ('' = none).
local function write_settings(base, sku, bo, pcl, ssa)
  if bo == 0 then
    redis.call('HDEL', base .. 'bo', sku)
  else
    redis.call('HSET', base .. 'bo', sku, int(bo))
  end
  if pcl == '' and ssa == '' then
    redis.call('HDEL', base .. 'rules', sku)
  else
    redis.call('HSET', base .. 'rules', sku,
      (pcl == '' and '-' or pcl) .. ' ' .. (ssa == '' and '-' or ssa))
  end
end

-- A hold's lines as confirmed: a part's staged change counts only once
-- its home has taken it (its old quantities until then; the record's
-- lines hold the larger of old and new, so every changed SKU is one).
-- { {sku, qty} } in line order, without lines of 0.
local function confirmed_lines(h)
  local skus, qtys = words(h.skus), words(h.qtys)
  local old = {}
  if h.pv ~= '' then
    local c = words(h.chg)
    for k = 1, #c, 3 do old[c[k]] = c[k + 1] end
  end
  local out = {}
  for i, sku in ipairs(skus) do
    local q = old[sku] or qtys[i]
    if q ~= '0' then out[#out + 1] = { sku, q } end
  end
  return out
end

-- The event a hold's change makes, from its record `b` as the call found
-- it (nil: none) to `a` as it left it; nil when none (a part's change
-- still staged, a commit under way).
local function hold_event(b, a, bl, al)
  local was = b and b.st or ''
  -- (a part whose every line is still staged is not a hold yet, but it
  -- can be sold or ended with its stage: that is told)
  if b and was == 'held' and b.home ~= '' and #bl == 0 and a.st == 'held' then was = '' end
  if a.st == 'held' then
    if was == '' then
      if a.home == '' or #al > 0 then return 'hold.created' end
      return nil
    end
    if was ~= 'held' then return nil end
    -- (a home's version moves with a change of the basket's lines in
    -- other partitions too: the basket's own event)
    if #al ~= #bl or (a.home == '' and (a.ea ~= b.ea or a.ver ~= b.ver)) then
      return 'hold.changed'
    end
    for i, l in ipairs(al) do
      if l[1] ~= bl[i][1] or l[2] ~= bl[i][2] then return 'hold.changed' end
    end
    return nil
  end
  if was ~= 'held' and was ~= 'committing' then return nil end
  if a.home ~= '' and #al == 0 then return nil end
  if a.st == 'committed' then return 'hold.committed' end
  if a.st == 'released' then return 'hold.released' end
  if a.st == 'expired' then return 'hold.expired' end
  return nil
end

-- Appends the events of this call (see EV) to base.."events", and keeps
-- each noted SKU's stock state (base.."stock": sku -> 'out' when nothing
-- is available, 'low' when available is above 0 and at most its low-stock
-- threshold (base.."low"); no field otherwise): a SKU whose state changes
-- gets sku.out_of_stock, sku.back_in_stock or sku.low_stock. The available
-- count is the SKU's own field: its shared pool's when it has
-- allocations. A SKU spread over buckets (base.."bk" in its own
-- partition, base.."inbk" in its other buckets) has no count of its own
-- in any one partition: its lines carry none ('-') and it gets no
-- stock-state events. With EV.quiet (a rebuild) states are kept and no
-- event is written.
--
-- Cheap on the hot path: a SKU whose count was above its bound (0, or its
-- threshold) before the call and still is after cannot have changed state,
-- so its state is not read; counts the call noted (ev_count) are not read
-- again. A reserve of a basket pays a TIME, an EXISTS and the XADD.
-- Notes in `need` that SKU `sku`'s count after must be read.
local function need_count(need, sku)
  if EV.after[sku] == nil and not need[sku] then
    need[sku] = true
    need[#need + 1] = sku
  end
end

-- Appends an event (name, value, ...) to `stream`.
local function emit(stream, fields)
  if not EV.quiet then
    redis.call('XADD', stream, '*', unpack(fields))
  end
end

local function flush_events()
  local base = EV.base
  if not base then return end
  local holds = {}
  local need = {}  -- SKUs whose count after must be read
  local lined = {} -- SKUs of hold events' lines the call did not touch
  for _, key in ipairs(EV.keys) do
    local before = READ[key]
    local a = parse_hold(EV.recs[key])
    local t, skus, qtys
    if not before and a.home == '' and a.st == 'held' then
      -- A new hold (the common case): its lines as the record has them.
      t, skus, qtys = 'hold.created', a.skus, a.qtys
    else
      local b = before and parse_hold(before) or nil
      local bl, al = b and confirmed_lines(b) or {}, confirmed_lines(a)
      t = hold_event(b, a, bl, al)
      if t then
        local lines = (t == 'hold.created' or t == 'hold.changed') and al
          or (#al > 0 and al or bl)
        local s, q = {}, {}
        for k, l in ipairs(lines) do s[k], q[k] = l[1], l[2] end
        skus, qtys = table.concat(s, ' '), table.concat(q, ' ')
      end
    end
    if t then
      local list = words(skus)
      for _, sku in ipairs(list) do
        need_count(need, sku)
        if not EV.seen[sku] and not lined[sku] then
          lined[sku] = true
          lined[#lined + 1] = sku
        end
      end
      holds[#holds + 1] = { t = t, id = string.match(key, 'hold:([^:]*)$'), h = a,
        skus = skus, qtys = qtys, list = list }
    end
  end
  local touched = EV.skus
  if #touched == 0 and #holds == 0 and #EV.extra == 0 then return end
  for _, sku in ipairs(touched) do need_count(need, sku) end
  local after = EV.after
  if #need > 0 then
    local got = redis.call('HMGET', base .. 'avail', unpack(need))
    for i, sku in ipairs(need) do after[sku] = got[i] or false end
  end
  -- Thresholds and spread SKUs: most deployments have neither.
  local low, spread = {}, {}
  local all = touched
  if #lined > 0 then
    all = {}
    for _, sku in ipairs(touched) do all[#all + 1] = sku end
    for _, sku in ipairs(lined) do all[#all + 1] = sku end
  end
  if #all > 0 and redis.call('EXISTS', base .. 'low', base .. 'bk', base .. 'inbk') > 0 then
    local lows = redis.call('HMGET', base .. 'low', unpack(all))
    local bk = redis.call('HMGET', base .. 'bk', unpack(all))
    local inbk = redis.call('HMGET', base .. 'inbk', unpack(all))
    for i, sku in ipairs(all) do
      low[sku] = lows[i] and tonumber(lows[i])
      spread[sku] = (bk[i] and bk[i] ~= '1 1') or inbk[i]
    end
  end
  local now = int(last_now or now_ms())
  local stream = base .. 'events'
  for _, e in ipairs(holds) do
    local av = {}
    for k, sku in ipairs(e.list) do
      local a = after[sku]
      av[k] = (a and not spread[sku]) and a or '-'
    end
    local h = e.h
    local fields = { 't', e.t, 'at', now, 'hold', e.id, 'ea', h.ea, 'skus', e.skus,
      'qtys', e.qtys, 'avail', table.concat(av, ' ') }
    -- (fields left out are empty)
    if h.home ~= '' then fields[#fields + 1] = 'part' fields[#fields + 1] = '1' end
    if h.cust ~= '' then fields[#fields + 1] = 'cust' fields[#fields + 1] = h.cust end
    if h.chan ~= '' then fields[#fields + 1] = 'chan' fields[#fields + 1] = h.chan end
    if h.oid ~= '' then fields[#fields + 1] = 'oid' fields[#fields + 1] = h.oid end
    emit(stream, fields)
  end
  for _, e in ipairs(EV.extra) do
    local fields = { 't', e.t, 'at', now, 'sku', e.sku }
    if e.sku ~= '' then
      local a = after[e.sku]
      fields[#fields + 1] = 'avail'
      fields[#fields + 1] = (a and not spread[e.sku]) and a or '-'
    end
    for _, x in ipairs(e.fields) do fields[#fields + 1] = x end
    emit(stream, fields)
  end
  -- Stock states: read only for SKUs that may have crossed a bound.
  local check = {}
  for _, sku in ipairs(touched) do
    local a, b = tonumber(after[sku]), EV.before[sku]
    if a and not spread[sku] then
      local bound = low[sku] or 0
      if not (b and b > bound and a > bound) then check[#check + 1] = sku end
    end
  end
  if #check == 0 then return end
  local state = redis.call('HMGET', base .. 'stock', unpack(check))
  local sets, dels, crossed = {}, {}, {}
  for i, sku in ipairs(check) do
    local a, t = tonumber(after[sku]), low[sku]
    local now_state = (a <= 0 and 'out') or (t and a <= t and 'low') or ''
    local was = state[i] or ''
    if now_state ~= was then
      if now_state == '' then
        dels[#dels + 1] = sku
      else
        sets[#sets + 1] = sku
        sets[#sets + 1] = now_state
      end
      local t_name = (now_state == 'out' and 'sku.out_of_stock')
        or (was == 'out' and 'sku.back_in_stock')
        or (now_state == 'low' and 'sku.low_stock')
      if t_name then crossed[#crossed + 1] = { sku, t_name, a, t } end
    end
  end
  if #sets > 0 then redis.call('HSET', base .. 'stock', unpack(sets)) end
  if #dels > 0 then redis.call('HDEL', base .. 'stock', unpack(dels)) end
  if #crossed > 0 and not EV.quiet then
    local names = {}
    for k, c in ipairs(crossed) do names[k] = c[1] end
    local on_hand = redis.call('HMGET', base .. 'onhand', unpack(names))
    for k, c in ipairs(crossed) do
      emit(stream, { 't', c[2], 'at', now, 'sku', c[1], 'avail', int(c[3]),
        'onhand', on_hand[k] or '0', 'low', c[4] and int(c[4]) or '' })
    end
  end
end
