-- Erase one user's keys in a namespace, in one atomic step, and leave a tombstone.
--
-- KEYS[1]  the profile hash          mt:NS:profile:USER
-- KEYS[2]  the recent items list     mt:NS:recent:USER
-- KEYS[3]  the trigger log           mt:NS:triggers:USER
-- KEYS[4]  the segment set           mt:NS:segments:USER (names of the user's segments)
-- KEYS[5]  the tombstone             mt:NS:erased:SUBJECT
-- KEYS[6]  the model scores          mt:NS:scores:USER (MODEL, MODEL:version, MODEL:at)
-- ARGV[1]  the user (member of each segment's sorted set)
-- ARGV[2]  erased-at (ms): data from then or before goes; anything newer (the user
--          granted consent again since) stays
-- ARGV[3]  TTL of the tombstone in seconds (0: no expiry)
-- ARGV[4]  the prefix of a segment's sorted set: mt:NS:segment:
-- ARGV[5]  the prefix of a trigger's send-once guard: mt:NS:trigger:
--
-- Returns {keys deleted, segment memberships removed, trigger log entries removed}.
-- Checks come before writes: a key of the wrong type fails the call and changes nothing.
local at = tonumber(ARGV[2])
local expected = {'hash', 'list', 'list', 'set', 'string', 'hash'}
for k = 1, 6 do
  local kind = redis.call('TYPE', KEYS[k])['ok']
  if kind ~= 'none' and kind ~= expected[k] then
    return redis.error_reply(KEYS[k] .. ' holds a ' .. kind .. ', not a ' .. expected[k])
  end
end
local segments = redis.call('SMEMBERS', KEYS[4])
for _, name in ipairs(segments) do
  local suffixes, wanted = {'', ':seen', ':meta'}, {'zset', 'zset', 'hash'}
  for j = 1, 3 do
    local kind = redis.call('TYPE', ARGV[4] .. name .. suffixes[j])['ok']
    if kind ~= 'none' and kind ~= wanted[j] then
      return redis.error_reply(ARGV[4] .. name .. suffixes[j] .. ' holds a ' .. kind
                               .. ', not a ' .. wanted[j])
    end
  end
end
local first = redis.call('HGET', KEYS[1], 'first_seen')
if first and not tonumber(first) then
  return redis.error_reply(KEYS[1] .. ' has a first_seen that is not a number')
end

local stone = redis.call('GET', KEYS[5])
if not stone or tonumber(stone) < at then
  local ttl = tonumber(ARGV[3])
  if ttl > 0 then
    redis.call('SET', KEYS[5], ARGV[2], 'EX', ttl)
  else
    redis.call('SET', KEYS[5], ARGV[2])
  end
end

local keys_deleted = 0
-- The profile (and its recent items) unless it was started after the erasure.
if not first or tonumber(first) <= at then
  keys_deleted = keys_deleted + redis.call('DEL', KEYS[1], KEYS[2])
end

-- Model scores as of the erasure or before.
local scores = redis.call('HGETALL', KEYS[6])
if #scores > 0 then
  local kept = 0
  for i = 1, #scores, 2 do
    local field = scores[i]
    if string.sub(field, -3) == ':at' then
      local model = string.sub(field, 1, -4)
      if tonumber(scores[i + 1]) <= at then
        redis.call('HDEL', KEYS[6], model, model .. ':version', model .. ':at')
      else
        kept = kept + 1
      end
    end
  end
  if kept == 0 then
    redis.call('DEL', KEYS[6])
    keys_deleted = keys_deleted + 1
  end
end

-- Trigger log entries whose first matched event is at or before the erasure, and their
-- send-once guards
-- (the tombstone refuses those triggers from now on).
local log_removed = 0
local entries = redis.call('LRANGE', KEYS[3], 0, -1)
if #entries > 0 then
  local keep = {}
  for _, entry in ipairs(entries) do
    local ok, trigger = pcall(cjson.decode, entry)
    local began = nil
    if ok and type(trigger) == 'table' then
      began = tonumber(trigger['first_event_time']) or tonumber(trigger['event_time'])
    end
    if began and began > at then
      table.insert(keep, entry)
    else
      log_removed = log_removed + 1
      if ok and type(trigger) == 'table' and type(trigger['trigger_id']) == 'string' then
        keys_deleted = keys_deleted + redis.call('DEL', ARGV[5] .. trigger['trigger_id'])
      end
    end
  end
  if log_removed > 0 then
    local ttl = redis.call('PTTL', KEYS[3])
    redis.call('DEL', KEYS[3])
    if #keep > 0 then
      for from = 1, #keep, 1000 do  -- unpack has a limit on how many values it returns
        redis.call('RPUSH', KEYS[3], unpack(keep, from, math.min(from + 999, #keep)))
      end
      if ttl > 0 then
        redis.call('PEXPIRE', KEYS[3], ttl)
      end
    else
      keys_deleted = keys_deleted + 1
    end
  end
end

-- Segment memberships that began at or before the erasure (score = joined at, ms).
local members_removed = 0
for _, name in ipairs(segments) do
  local joined = redis.call('ZSCORE', ARGV[4] .. name, ARGV[1])
  if not joined or tonumber(joined) <= at then
    members_removed = members_removed + redis.call('ZREM', ARGV[4] .. name, ARGV[1])
    redis.call('ZREM', ARGV[4] .. name .. ':seen', ARGV[1])
    redis.call('SREM', KEYS[4], name)
    if redis.call('EXISTS', ARGV[4] .. name .. ':meta') == 1 then
      local size = redis.call('ZCARD', ARGV[4] .. name)
      local min_size = tonumber(redis.call('HGET', ARGV[4] .. name .. ':meta', 'min_size') or '0')
      redis.call('HSET', ARGV[4] .. name .. ':meta', 'size', size,
                 'active', size >= min_size and '1' or '0')
    end
  end
end
if #segments > 0 and redis.call('EXISTS', KEYS[4]) == 0 then
  keys_deleted = keys_deleted + 1
end
return {keys_deleted, members_removed, log_removed}
