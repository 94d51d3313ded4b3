-- watch.lua: starts or ends a watch under which a reconciliation reads a
-- partition's live holds (see note_change in common.lua): while it is on,
-- every hold changed is noted, as it was when the watch began, in
-- base.."touched:"..token. Each reconciliation has its own, so one that
-- runs long (or starts over with a new watch) never makes another read
-- more than the changes since its own start.
--
-- KEYS[1]  base.."watches"  zset: token -> ms after which it is abandoned
-- ARGV[1]  base prefix
-- ARGV[2]  'start' or 'end'
-- ARGV[3]  the watch's token
--
-- Returns {'ok'}.
local base, op, token = ARGV[1], ARGV[2], ARGV[3]
fence(base)
if op == 'end' then
  redis.call('ZREM', KEYS[1], token)
  redis.call('DEL', base .. 'touched:' .. token)
  return { 'ok' }
end
-- Watches whose reconciliation stopped renewing them (it died) end here.
local now = now_ms()
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], dead)
  redis.call('DEL', base .. 'touched:' .. dead)
end
redis.call('ZADD', KEYS[1], now + WATCH_TTL_MS, token)
return { 'ok' }
