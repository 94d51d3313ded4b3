-- put_sku.lua: creates or updates a SKU; a change of on_hand is computed
-- against the live count and appended to the outbox with the new settings.
--
-- KEYS[1]  base.."avail"
-- ARGV[1]  base prefix
-- ARGV[2]  sku
-- ARGV[3]  on_hand, or '' to keep it (required when the SKU is new)
-- ARGV[4]  backorder_limit, or '' to keep it (0 when new)
-- ARGV[5]  per_customer_limit, '' to keep it, '-' to remove it
-- ARGV[6]  sale_starts_at in ms, '' to keep it, '-' to remove it
-- ARGV[7]  buckets, '' to keep it
-- ARGV[8]  safety_stock, '' to keep it
-- ARGV[9]  allocations: '' to keep them, '-' for none, else every channel's
--          share "chan units ..." (channels not named lose theirs)
-- ARGV[10] low-stock threshold, '' to keep it, '-' to remove it
--
-- Runs in the SKU's own partition (its bucket 0): with buckets, on_hand
-- here is bucket 0's share (the caller turns a total into it), and
-- base.."bk" keeps "buckets span" (span: the most buckets ever set, the
-- partitions that may still hold units of the SKU).
--
-- Returns one of
--   {'not_ready'}  Redis lost its data and is not rebuilt yet (nothing done)
--   {'created'|'updated', on_hand, held, bo, pcl, ssa, outbox_id, bk, pools, low}
--        pcl/ssa/low '' when none; outbox_id '' when nothing changed; bk
--        "buckets span"; pools as pools_text (common.lua)
--   {'on_hand_required'}
--   {'insufficient', requested_available, held}  the change would leave
--        available below 0 (on_hand + backorder_limit below held; with
--        pools: what the shared pool would have below what it holds)
--   {'pool_below_held', pool, units, held, ...}  a change of the
--        allocations or the safety stock would leave a pool ('shared' or a
--        channel) with fewer units than its holds have taken from it
--   {'bucket_pools'}  allocations or safety stock on a SKU spread over
--        buckets (now or ever)
--   {'bucket_low_stock'}  a low-stock threshold on a SKU spread over
--        buckets (now or ever: no partition has its whole count)
--   {'bucket_backorder'}  a backorder limit on a SKU spread over buckets
--        (now or ever: span > 1)
--   {'bucket_limit'}  buckets would change while the SKU keeps or gets a
--        per-customer limit (each customer's count lives in one bucket)
--   {'spread_settling', ms}  a per-customer limit set less than
--        SPREAD_SETTLE_MS after the SKU's buckets changed: every instance
--        must route its customers' lines to their bucket first (they read
--        the buckets once a second); nothing done, call again in ms
--   {'spread_on_hand'}  on_hand given for a SKU spread over buckets: its
--        units move between them, so only adjustments (relative) change it
-- Outbox entry (only when something changed):
--   kind=sku sku created(1|0) delta on_hand_after bo pcl ssa low bk safety
--   safety_delta chans pools at; chans: the channels with an allocation now; pools
--   "chan share_after delta ..." for every allocation that is or was
local base, sku = ARGV[1], ARGV[2]
if not ready(base) then return { 'not_ready' } end
local old = read_sku(base, sku)
local created = old == nil
if created and ARGV[3] == '' then return { 'on_hand_required' } end
old = old or { on_hand = 0, held = 0, bo = 0, pcl = '', ssa = '', safety = 0, shares = 0,
  shared_held = 0, pools = {}, low = '' }
local on_hand = ARGV[3] ~= '' and tonumber(ARGV[3]) or old.on_hand
local bo = ARGV[4] ~= '' and tonumber(ARGV[4]) or old.bo
local function setting(arg, was)
  if arg == '' then return was end
  if arg == '-' then return '' end
  return arg
end
local pcl, ssa = setting(ARGV[5], old.pcl), setting(ARGV[6], old.ssa)
local low = setting(ARGV[10], old.low)
local old_n, span = buckets_of(base, sku)
if ARGV[3] ~= '' and not created and span > 1 then return { 'spread_on_hand' } end
local n = ARGV[7] ~= '' and tonumber(ARGV[7]) or old_n
if n > span then span = n end
-- Units a backorder limit allows would appear in every bucket rebuilt.
if span > 1 and bo ~= 0 then return { 'bucket_backorder' } end
if span > 1 and low ~= '' then return { 'bucket_low_stock' } end
if n ~= old_n and pcl ~= '' then return { 'bucket_limit' } end
local SPREAD_SETTLE_MS = 3000
if span > 1 and pcl ~= '' and old.pcl == '' then
  local at = redis.call('HGET', base .. 'bkat', sku)
  local wait = at and tonumber(at) + SPREAD_SETTLE_MS - now_ms() or 0
  if wait > 0 then return { 'spread_settling', int(wait) } end
end
-- The pools: each allocation's share is set (taken from or given to the
-- shared pool), never below what holds took from it.
local safety = ARGV[8] ~= '' and tonumber(ARGV[8]) or old.safety
local chans, share_was, held_of = {}, {}, {}
for _, p in ipairs(old.pools) do
  chans[#chans + 1] = p.chan
  share_was[p.chan], held_of[p.chan] = p.share, p.held
end
local share = {}
if ARGV[9] == '' then
  for c, v in pairs(share_was) do share[c] = v end
elseif ARGV[9] ~= '-' then
  for c, u in string.gmatch(ARGV[9], '(%S+) (%d+)') do
    share[c] = tonumber(u)
    if not share_was[c] then chans[#chans + 1] = c end
  end
end
local pools_changed = safety ~= old.safety
local below, now_chans, shares = { 'pool_below_held' }, {}, 0
for _, c in ipairs(chans) do
  local t = share[c] or 0
  if t ~= (share_was[c] or 0) or (share[c] == nil) ~= (share_was[c] == nil) then
    pools_changed = true
  end
  if t < (held_of[c] or 0) then
    for _, x in ipairs({ c, int(t), int(held_of[c]) }) do below[#below + 1] = x end
  end
  if share[c] then
    now_chans[#now_chans + 1] = c
    shares = shares + t
  end
end
if span > 1 and (safety > 0 or #now_chans > 0) then return { 'bucket_pools' } end
local shared = on_hand - shares - safety + bo -- the shared pool's units
if shared < old.shared_held and (pools_changed or #below > 1) then
  for _, x in ipairs({ 'shared', int(shared), int(old.shared_held) }) do below[#below + 1] = x end
end
if #below > 1 then return below end
if shared < old.shared_held then
  return { 'insufficient', int(shared), int(old.shared_held) }
end

local changed = created or on_hand ~= old.on_hand or bo ~= old.bo
  or pcl ~= old.pcl or ssa ~= old.ssa or n ~= old_n or pools_changed or low ~= old.low
local bk = int(n) .. ' ' .. int(span)
redis.call('HSET', base .. 'onhand', sku, int(on_hand))
if span > 1 then redis.call('HSET', base .. 'bk', sku, bk) end
if n ~= old_n then redis.call('HSET', base .. 'bkat', sku, int(now_ms())) end
redis.call('HSET', KEYS[1], sku, int(shared - old.shared_held))
write_settings(base, sku, bo, pcl, ssa)
if low == '' then
  redis.call('HDEL', base .. 'low', sku)
else
  redis.call('HSET', base .. 'low', sku, low)
end
local moved = {}
for _, c in ipairs(chans) do
  local avail_key, share_key = pool_keys(base, c)
  local t = share[c] or 0
  if share[c] then
    redis.call('HSET', share_key, sku, int(t))
    redis.call('HSET', avail_key, sku, int(t - (held_of[c] or 0)))
  else
    redis.call('HDEL', share_key, sku)
    redis.call('HDEL', avail_key, sku)
  end
  moved[#moved + 1] = c .. ' ' .. int(t) .. ' ' .. int(t - (share_was[c] or 0))
end
if safety == 0 and #now_chans == 0 then
  redis.call('HDEL', base .. 'pools', sku)
else
  redis.call('HSET', base .. 'pools', sku, int(safety) .. ' ' .. table.concat(now_chans, ' '))
end
local outbox_id = ''
if changed then
  outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'sku', 'sku', sku,
    'created', created and '1' or '0', 'delta', int(on_hand - old.on_hand),
    'on_hand_after', int(on_hand), 'bo', int(bo), 'pcl', pcl, 'ssa', ssa, 'low', low, 'bk', bk,
    'safety', int(safety), 'safety_delta', int(safety - old.safety), 'chans', table.concat(now_chans, ' '), 'pools', table.concat(moved, ' '),
    'at', int(now_ms()))
end
ev_touch(base, sku)
if on_hand ~= old.on_hand then
  ev_add(base, 'sku.adjusted', sku, { 'delta', int(on_hand - old.on_hand), 'onhand', int(on_hand),
    'reason', created and 'created' or 'set', 'ref', '', 'note', '' })
end
local v = read_sku(base, sku)
return { created and 'created' or 'updated', int(on_hand), int(v.held), int(bo), pcl, ssa, outbox_id,
  bk, pools_text(v), low }
