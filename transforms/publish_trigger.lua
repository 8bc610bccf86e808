-- Publish one trigger at most once: the id guard, the per-user log and the topic append
-- happen together or not at all, so a retried bundle or a second replay publishes nothing twice.
--
-- KEYS[1]  the id guard (a string key; its presence means "already published")
-- KEYS[2]  the user's trigger log (a list, newest first)
-- KEYS[3]  the user's erasure tombstone (a string: erased-at ms, usually absent)
-- KEYS[4]  the topic stream (optional: absent when the trigger is not for action)
-- ARGV[1]  TTL in seconds of the guard and the log (0: no expiry)
-- ARGV[2]  the trigger as canonical JSON
-- ARGV[3]  how many entries the user's log keeps
-- ARGV[4]  approximate MAXLEN of the stream
-- ARGV[5]  the trigger id (a stream field, so consumers can dedupe)
-- ARGV[6]  the pattern (a stream field, so consumers can filter without parsing)
-- ARGV[7]  the user (a stream field, so an erasure finds the user's entries)
-- ARGV[8]  the event time (ms) of the trigger's first matched event
--
-- Returns 1 if published now, 0 if the id was published before, 2 if the user was erased
-- at or after the trigger's first matched event (a trigger that raced the erasure, or one
-- a pipeline still holding the erased state completed, stays unpublished).
-- Redis does not undo a script's writes when it fails halfway, so every check comes
-- before the first write and the guard is written last: a failure leaves nothing
-- behind, and the retry publishes.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local erased = redis.call('GET', KEYS[3])
if erased and tonumber(ARGV[8]) <= tonumber(erased) then
  return 2
end
local log_type = redis.call('TYPE', KEYS[2])['ok']
if log_type ~= 'none' and log_type ~= 'list' then
  return redis.error_reply('trigger log ' .. KEYS[2] .. ' holds a ' .. log_type)
end
if KEYS[4] then
  local stream_type = redis.call('TYPE', KEYS[4])['ok']
  if stream_type ~= 'none' and stream_type ~= 'stream' then
    return redis.error_reply('trigger stream ' .. KEYS[4] .. ' holds a ' .. stream_type)
  end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*',
             'trigger_id', ARGV[5], 'pattern', ARGV[6], 'user', ARGV[7], 'trigger', ARGV[2])
end
local ttl = tonumber(ARGV[1])
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('SET', KEYS[1], '1', 'EX', ttl)
else
  redis.call('SET', KEYS[1], '1')
end
return 1
