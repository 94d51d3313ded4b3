-- mark_ready.lua: ends a rebuild: Redis holds the state rebuilt from the
-- ledger, so write scripts may run again; the rebuild lease is released.
--
-- KEYS[1]  the ready marker (base.."ready")
-- ARGV[1]  base prefix
-- ARGV[2]  the rebuild lease's owner
-- ARGV[3]  the run id of the Redis server that was rebuilt (INFO server):
--          a Redis that restarts comes back with this marker but another
--          run id, and every instance then knows its last writes may be lost
-- ARGV[4]  ms of this rebuild if it may have lost holds (a restart, a
--          failover, data lost), recorded as base.."lost-at"; '' if not
-- Returns 1, or 0 (nothing done) if the caller no longer holds the lease.
local base, owner = ARGV[1], ARGV[2]
-- The fence of common.lua (this script is loaded without it).
redis.call('EXISTS', KEYS[1], base .. 'moving')
if redis.call('GET', base .. 'rebuild-lock') ~= owner then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', base .. 'lost-at', ARGV[4]) end
-- Events may have been lost with the rest (or the stream is new): an entry
-- added and deleted at once marks every position before now as missing
-- some, and a reader resuming from one is told so (src/http/events.rs).
local events = base .. 'events'
if ARGV[4] ~= '' or redis.call('EXISTS', events) == 0 then
  redis.call('XDEL', events, redis.call('XADD', events, '*', 'lost', '1'))
end
redis.call('DEL', base .. 'rebuild-lock')
return 1
