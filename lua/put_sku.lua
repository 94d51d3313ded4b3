-- put_sku.lua: creates or updates a SKU; a change of on_hand is computed
-- against the live count and appended to the outbox with the new settings.
--
-- KEYS[1]  SKU key (base.."sku:"..sku)
-- ARGV[1]  base prefix
-- ARGV[2]  sku
-- ARGV[3]  on_hand, or '' to keep it (required when the SKU is new)
-- ARGV[4]  backorder_limit, or '' to keep it (0 when new)
-- ARGV[5]  per_customer_limit, '' to keep it, '-' to remove it
-- ARGV[6]  sale_starts_at in ms, '' to keep it, '-' to remove it
--
-- Returns one of
--   {'not_ready'}  Redis lost its data and is not rebuilt yet (nothing done)
--   {'created'|'updated', on_hand, held, bo, pcl, ssa, outbox_id}
--        pcl/ssa '' when none; outbox_id '' when nothing changed
--   {'on_hand_required'}
--   {'insufficient', requested_available, held}  the change would leave
--        available below 0 (on_hand + backorder_limit below held)
-- Outbox entry (only when something changed):
--   kind=sku sku created(1|0) delta on_hand_after bo pcl ssa at
local base, sku, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local v = redis.call('HMGET', key, 'on_hand', 'held', 'bo', 'pcl', 'ssa')
local created = not v[1]
if created and ARGV[3] == '' then return { 'on_hand_required' } end
local old_on_hand, held = tonumber(v[1] or '0'), tonumber(v[2] or '0')
local on_hand = ARGV[3] ~= '' and tonumber(ARGV[3]) or old_on_hand
local bo = ARGV[4] ~= '' and tonumber(ARGV[4]) or tonumber(v[3] or '0')
local function setting(arg, old)
  if arg == '' then return old or '' end
  if arg == '-' then return '' end
  return arg
end
local pcl, ssa = setting(ARGV[5], v[4]), setting(ARGV[6], v[5])
if on_hand + bo < held then
  return { 'insufficient', int(on_hand + bo), int(held) }
end

local changed = created or on_hand ~= old_on_hand or bo ~= tonumber(v[3])
  or pcl ~= (v[4] or '') or ssa ~= (v[5] or '')
redis.call('HSET', key, 'on_hand', int(on_hand), 'held', int(held), 'bo', int(bo))
if pcl == '' then redis.call('HDEL', key, 'pcl') else redis.call('HSET', key, 'pcl', pcl) end
if ssa == '' then redis.call('HDEL', key, 'ssa') else redis.call('HSET', key, 'ssa', ssa) end
local outbox_id = ''
if changed then
  outbox_id = redis.call('XADD', base .. 'outbox', '*', 'kind', 'sku', 'sku', sku,
    'created', created and '1' or '0', 'delta', int(on_hand - old_on_hand),
    'on_hand_after', int(on_hand), 'bo', int(bo), 'pcl', pcl, 'ssa', ssa,
    'at', int(now_ms()))
end
return { created and 'created' or 'updated', int(on_hand), int(held), int(bo), pcl, ssa, outbox_id }
