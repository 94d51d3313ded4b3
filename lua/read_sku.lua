-- read_sku.lua: one SKU's live counts and settings, read at one instant
-- (with its allocations' counts, which live in fields of their own).
--
-- KEYS[1]  base.."avail"
-- ARGV[1]  base prefix
-- ARGV[2]  sku
--
-- Returns {'none'} when the SKU is not set up here, else
--   {'ok', on_hand, held, bo, pcl, ssa, pools, bk, low}
-- pcl/ssa/low '' when none; pools as pools_text (common.lua); bk "buckets
-- span" ('' when never spread). Writes nothing.
local base, sku = ARGV[1], ARGV[2]
fence(base)
local v = read_sku(base, sku)
if not v then return { 'none' } end
return { 'ok', int(v.on_hand), int(v.held), int(v.bo), v.pcl, v.ssa, pools_text(v),
  redis.call('HGET', base .. 'bk', sku) or '', v.low }
