-- finish_stage.lua: the last step of a change to a basket over several
-- partitions, in a part: confirms the staged change (the home took it) or
-- undoes it (the home refused, or never decided in time), and takes the
-- home's expiry. A part never confirmed that is undone disappears.
--
-- KEYS[1]  the part's key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  the change ("version:token"), or '' to only take the expiry
-- ARGV[4]  'confirm' or 'undo'
-- ARGV[5]  the home's expires_at ms ('' = keep)
--
-- Returns {'ok', record} | {'gone'} (no part, or undone to nothing) |
-- {'not_ready'}. A change that is not the one pending (finished before)
-- is left alone; the expiry is taken all the same while the part is held.
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'gone' } end
if ARGV[3] ~= '' and h.pv == ARGV[3] then
  settle_stage(base, h, ARGV[4])
  if h.ver == '0' then
    note_change(key)
    redis.call('DEL', key)
    redis.call('ZREM', base .. 'exp', id)
    return { 'gone' }
  end
end
if h.st == 'held' then
  if ARGV[5] ~= '' then h.ea = ARGV[5] end
  local due = tonumber(h.ea)
  if h.pv ~= '' then due = now_ms() + 5000 end
  redis.call('ZADD', base .. 'exp', due, id)
end
return { 'ok', write_hold(key, h) }
