-- end_part.lua: ends the part of a basket over several partitions that
-- lives in this partition, after its home ended (released or expired) or
-- is gone: a pending change is undone, every unit goes back.
--
-- KEYS[1]  the part's key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  'released' or 'expired'
--
-- Returns {'ok', record} | {'gone'} | {'not_ready'} | {'committed'} (a part
-- already sold stays sold).
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'gone' } end
if h.st == 'committed' then return { 'committed' } end
if h.st ~= 'held' then return { 'ok', encode_hold(h) } end
if h.pv ~= '' then
  settle_stage(base, h, 'undo')
  if h.ver == '0' then
    note_change(key)
    redis.call('DEL', key)
    redis.call('ZREM', base .. 'exp', id)
    return { 'gone' }
  end
end
return { 'ok', end_hold(base, key, id, h, ARGV[3]) }
