-- lease.lua: a key owned by whoever's value it holds, for a limited time:
-- the rebuild lease, an idempotency claim, the ready marker of an earlier
-- Redis run. Only the owner renews or releases it, so a late call of an
-- owner whose lease ran out (and was taken by another) changes nothing.
--
-- KEYS[1]  the key
-- ARGV[1]  'acquire' (set it if absent or already ours), 'renew' (restart
--          its time if ours) or 'release' (delete it if ours)
-- ARGV[2]  the owner's value
-- ARGV[3]  time to live in ms ('acquire' and 'renew')
--
-- Returns 1 if the key is (acquire, renew) or was (release) ours, else 0.
local key, op, owner = KEYS[1], ARGV[1], ARGV[2]
local value = redis.call('GET', key)
if op == 'acquire' then
  if value and value ~= owner then return 0 end
  redis.call('SET', key, owner, 'PX', ARGV[3])
  return 1
end
if value ~= owner then return 0 end
if op == 'renew' then
  redis.call('PEXPIRE', key, ARGV[3])
else
  redis.call('DEL', key)
end
return 1
