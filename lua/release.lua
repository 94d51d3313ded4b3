-- release.lua: gives a hold's units back at once.
--
-- KEYS[1]  hold key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
--
-- Returns one of
--   {'not_ready'}  Redis lost its data and is not rebuilt yet (nothing done)
--   {'ok', record}  the record's state is 'released', or 'expired' when the
--        hold had already run out (both are answered 200); a basket over
--        several partitions lists them (`parts`): the caller ends each part
--        (end_part.lua)
--   {'not_found'} | {'committed'}
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'not_found' } end
if h.st == 'committed' or h.st == 'committing' then return { 'committed' } end
if not expire_if_due(base, key, id, h, now_ms()) and h.st == 'held' then
  end_hold(base, key, id, h, 'released')
end
return { 'ok', encode_hold(h) }
