-- The reference the issue measures the reserve script against: a plain
-- all-or-nothing reserve of string counters with MGET, DECRBY and HSET.
-- KEYS[1]: the hold (a hash of sku -> qty); KEYS[2..]: the lines' counters.
-- ARGV[i]: the quantity of line i (the counter KEYS[i + 1]).
-- Returns 1 when every line was taken, 0 (nothing taken) when one is short.
local counters = {}
for i = 2, #KEYS do
    counters[i - 1] = KEYS[i]
end
local have = redis.call('MGET', unpack(counters))
for i = 1, #counters do
    if tonumber(have[i] or '0') < tonumber(ARGV[i]) then
        return 0
    end
end
local hold = {}
for i = 1, #counters do
    redis.call('DECRBY', counters[i], ARGV[i])
    hold[#hold + 1] = counters[i]
    hold[#hold + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(hold))
return 1
