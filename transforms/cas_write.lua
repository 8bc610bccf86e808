-- Versioned, idempotent replace of one record kept as a hash, plus optional companions.
--
-- KEYS[1]   the hash; its field `version` holds the version of what it holds
-- KEYS[2]   the erasure tombstone of the record's user (a string: erased-at ms), or any
--           key when ARGV[2] is empty
-- KEYS[3..] companion keys replaced together with the hash (a list or a sorted set)
-- ARGV[1]   version of the new record (integer, only grows for one key)
-- ARGV[2]   event time (ms) of the oldest data in the record, or "" for no erasure check
-- ARGV[3]   TTL of the hash in seconds (0: no expiry)
-- ARGV[4]   number N of hash field/value pairs that follow
-- ARGV[5 .. 4+2N]  field, value, field, value, ...
-- then, for each companion key in order:
--   kind ("list" | "zset"), TTL seconds, number M of items, then the items
--   (list: M values, pushed in order; zset: M score/member pairs)
--
-- Returns 1 if written, 0 if the stored version is the same or newer (a stale or
-- retried write changes nothing), 2 if the record holds data from before its user's
-- erasure (a write that raced the erasure must not bring the data back).
if ARGV[2] ~= '' then
  local erased = redis.call('GET', KEYS[2])
  if erased and tonumber(ARGV[2]) <= tonumber(erased) then
    return 2
  end
end
local stored = redis.call('HGET', KEYS[1], 'version')
if stored and tonumber(stored) >= tonumber(ARGV[1]) then
  return 0
end
local n = tonumber(ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * n))
-- A hash with a long value is a hash table that rehashes incrementally, one bucket
-- per lookup. Finish that now, so equal records leave byte-identical keys (DUMP)
-- whatever is read later.
for _ = 1, 2 * n do
  redis.call('HEXISTS', KEYS[1], 'version')
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
local at = 5 + 2 * n
for k = 3, #KEYS do
  local kind = ARGV[at]
  local key_ttl = tonumber(ARGV[at + 1])
  local m = tonumber(ARGV[at + 2])
  at = at + 3
  redis.call('DEL', KEYS[k])
  if kind == 'list' then
    if m > 0 then
      redis.call('RPUSH', KEYS[k], unpack(ARGV, at, at + m - 1))
    end
    at = at + m
  else
    if m > 0 then
      redis.call('ZADD', KEYS[k], unpack(ARGV, at, at + 2 * m - 1))
    end
    at = at + 2 * m
  end
  if m > 0 and key_ttl > 0 then
    redis.call('EXPIRE', KEYS[k], key_ttl)
  end
end
return 1
