-- get_hold.lua: reads a hold as the API shows it (read only).
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
--
-- Returns {'ok', record, now_ms} or {'not_found'}. A held hold whose
-- expires_at is not after now is shown as expired (the reaper is about to
-- return its units; every write script treats it as expired already).
fence(ARGV[1])
local rec = redis.call('GET', KEYS[1])
if not rec then return { 'not_found' } end
return { 'ok', rec, int(now_ms()) }
