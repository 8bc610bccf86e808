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
--   kind ("list" | "zset" | "members"), TTL seconds, number M of items, then the items
--   (list: M values, pushed in order; zset: M score/member pairs; members: the user,
--   the namespace's key prefix (mt:NS:), then M name/joined-at/min-size triples, sorted
--   by name)
--
-- A "members" companion is the user's segment set (mt:NS:segments:USER). The user is
-- put in each segment's sorted set (mt:NS:segment:NAME, score: joined at) and its
-- ":seen" sorted set (score: this version), taken out of the segments left, and the
-- segment's ":meta" hash gets its size and whether it is active (size >= min size).
-- Members whose profile key has expired are pruned from the segments this write
-- touches, the least recently seen first, a few per write.
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
-- Checks before the first write: segment keys of the wrong type fail the call here.
local function segment_keys(prefix, name)
  return {prefix .. name, prefix .. name .. ':seen', prefix .. name .. ':meta'}
end
do
  local at = 5 + 2 * n
  for k = 3, #KEYS do
    local kind, m = ARGV[at], tonumber(ARGV[at + 2])
    at = at + 3
    if kind == 'members' then
      local prefix = ARGV[at + 1] .. 'segment:'
      local names = redis.call('SMEMBERS', KEYS[k])
      for i = 0, m - 1 do
        table.insert(names, ARGV[at + 2 + 3 * i])
      end
      for _, name in ipairs(names) do
        local wanted = {'zset', 'zset', 'hash'}
        for j, key in ipairs(segment_keys(prefix, name)) do
          local found = redis.call('TYPE', key)['ok']
          if found ~= 'none' and found ~= wanted[j] then
            return redis.error_reply(key .. ' holds a ' .. found .. ', not a ' .. wanted[j])
          end
        end
      end
      at = at + 2 + 3 * m
    elseif kind == 'list' then
      at = at + m
    else
      at = at + 2 * m
    end
  end
end
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
  if kind ~= 'members' then
    redis.call('DEL', KEYS[k])
  end
  if kind == 'members' then
    local user, ns = ARGV[at], ARGV[at + 1]
    local prefix = ns .. 'segment:'
    at = at + 2
    local now = {}
    for i = 0, m - 1 do
      now[ARGV[at + 3 * i]] = true
    end
    local touched = {}
    for _, name in ipairs(redis.call('SMEMBERS', KEYS[k])) do
      if not now[name] then
        local keys = segment_keys(prefix, name)
        redis.call('ZREM', keys[1], user)
        redis.call('ZREM', keys[2], user)
        table.insert(touched, {name, nil})
      end
    end
    redis.call('DEL', KEYS[k])
    for i = 0, m - 1 do
      local name, joined, min_size = ARGV[at + 3 * i], ARGV[at + 3 * i + 1], ARGV[at + 3 * i + 2]
      local keys = segment_keys(prefix, name)
      redis.call('SADD', KEYS[k], name)
      redis.call('ZADD', keys[1], joined, user)
      redis.call('ZADD', keys[2], ARGV[1], user)
      table.insert(touched, {name, min_size})
    end
    at = at + 3 * m
    for _, entry in ipairs(touched) do
      local keys = segment_keys(prefix, entry[1])
      for _, member in ipairs(redis.call('ZRANGE', keys[2], 0, 9)) do
        if redis.call('EXISTS', ns .. 'profile:' .. member) == 0 then
          redis.call('ZREM', keys[1], member)
          redis.call('ZREM', keys[2], member)
          redis.call('SREM', ns .. 'segments:' .. member, entry[1])
        end
      end
      local size = redis.call('ZCARD', keys[1])
      if entry[2] then
        redis.call('HSET', keys[3], 'min_size', entry[2])
      end
      local min_size = tonumber(redis.call('HGET', keys[3], 'min_size') or '0')
      redis.call('HSET', keys[3], 'size', size, 'active', size >= min_size and '1' or '0')
    end
  elseif kind == 'list' then
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
