-- trim_events.lua: drops a partition's events older than the retention
-- window and beyond the most it keeps, and records the newest id dropped as
-- the stream's max-deleted-entry-id (XTRIM alone leaves it), so a reader at
-- an older position is told it missed events (src/http/events.rs, the
-- webhook dispatcher's gaps).
--
-- KEYS[1]  base.."events"
-- ARGV[1]  base prefix
-- ARGV[2]  retention in ms
-- ARGV[3]  most entries kept
--
-- Returns the number of entries dropped.
local key = KEYS[1]
fence(ARGV[1])
if redis.call('EXISTS', key) == 0 then return 0 end
local cut = now_ms() - tonumber(ARGV[2])
local dropped = redis.call('XTRIM', key, 'MINID', int(cut) .. '-0')
  + redis.call('XTRIM', key, 'MAXLEN', ARGV[3])
if dropped == 0 then return 0 end

-- "ms-seq" as two numbers' texts; seq may not fit a double, so compared as
-- text of digits.
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), seq
end
local function less(a, b)
  local am, as = split(a)
  local bm, bs = split(b)
  if am ~= bm then return am < bm end
  if #as ~= #bs then return #as < #bs end
  return as < bs
end
local info = redis.call('XINFO', 'STREAM', key)
local last, deleted = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
end
-- Everything before the first entry left is gone: the id just before it.
local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
local gone = last
if #first > 0 then
  local ms, seq = split(first[1][1])
  if seq == '0' then
    -- (the largest sequence the service's ids have: i64)
    gone = int(ms - 1) .. '-9223372036854775807'
  else
    -- (seq - 1 of a decimal text: digits are few in practice)
    gone = int(ms) .. '-' .. int(tonumber(seq) - 1)
  end
end
if less(deleted, gone) then
  redis.call('XSETID', key, last, 'MAXDELETEDID', gone)
end
return dropped
