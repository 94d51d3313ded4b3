-- commit_part.lua: sells the part of a basket over several partitions that
-- lives in this partition, once its home has begun the commit (commit.lua
-- 'begin'): a pending change is confirmed if the home took it, else undone;
-- then every line is sold and the sale appended to this partition's outbox.
--
-- KEYS[1]  the part's key
-- ARGV[1]  base prefix
-- ARGV[2]  hold id
-- ARGV[3]  the home's version (changes up to it are confirmed)
-- ARGV[4]  order id
-- ARGV[5]  committed_at ms (the home's)
--
-- Returns one of
--   {'ok', outbox_id, sold, record, pools}  sold now: "sku qty on_hand_after
--        ...", and the allocations' part (see sell_lines)
--   {'repeat', record}               sold before
--   {'gone'}                         no part here (lost with the partition's
--                                    data; nothing sold)
--   {'not_ready'} | {'released'} | {'expired'}
-- Outbox entry: kind=part order res at lines="sku qty on_hand_after ..."
-- [pools="sku@chan n share_after ..."]: the stock movements of this
-- partition's lines; the order itself is in the home's entry.
local base, id, key = ARGV[1], ARGV[2], KEYS[1]
if not ready(base) then return { 'not_ready' } end
local h = read_hold(key)
if not h then return { 'gone' } end
if h.st == 'committed' then return { 'repeat', encode_hold(h) } end
if h.st ~= 'held' then return { h.st } end
if h.pv ~= '' then
  settle_stage(base, h, version_of(h.pv) <= tonumber(ARGV[3]) and 'confirm' or 'undo')
end
h.st, h.oid, h.cat = 'committed', ARGV[4], ARGV[5]
redis.call('ZREM', base .. 'exp', id)
local rec = write_hold(key, h)
local lines, pools = sell_lines(base, h)
local outbox_id = ''
if lines ~= '' then
  local entry = { 'kind', 'part', 'order', h.oid, 'res', id, 'at', h.cat, 'lines', lines }
  if pools ~= '' then
    entry[#entry + 1] = 'pools'
    entry[#entry + 1] = pools
  end
  outbox_id = redis.call('XADD', base .. 'outbox', '*', unpack(entry))
end
return { 'ok', outbox_id, lines, rec, pools }
