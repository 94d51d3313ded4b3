-- get_hold.lua: reads a hold as the API shows it (read only).
--
-- KEYS[1]  hold key
--
-- Returns {'ok', st, cust, chan, ca, ea, ln, oid, cat, pref} or {'not_found'}.
-- A held hold past its expiry is shown as 'expired' (the reaper is about to
-- return its units; every write script treats it as expired already).
local h = read_hold(KEYS[1])
if not h then return { 'not_found' } end
if h.st == 'held' and tonumber(h.ea) <= now_ms() then
  h.st = 'expired'
end
return hold_reply(h)
