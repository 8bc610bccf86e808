-- Publish one trigger at most once: the id guard, the per-user log and the topic append
-- happen together or not at all, so a retried bundle or a second replay publishes nothing twice.
--
-- KEYS[1]  the id guard (a string key; its presence means "already published")
-- KEYS[2]  the user's trigger log (a list, newest first)
-- KEYS[3]  the topic stream (optional: absent when the trigger is not for action)
-- ARGV[1]  TTL in seconds of the guard and the log (0: no expiry)
-- ARGV[2]  the trigger as canonical JSON
-- ARGV[3]  how many entries the user's log keeps
-- ARGV[4]  approximate MAXLEN of the stream
-- ARGV[5]  the trigger id (a stream field, so consumers can dedupe)
-- ARGV[6]  the pattern (a stream field, so consumers can filter without parsing)
--
-- Returns 1 if published now, 0 if the id was published before.
local ttl = tonumber(ARGV[1])
local fresh
if ttl > 0 then
  fresh = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ttl)
else
  fresh = redis.call('SET', KEYS[1], '1', 'NX')
end
if not fresh then
  return 0
end
redis.call('LPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[3]) - 1)
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
end
if KEYS[3] then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
             'trigger_id', ARGV[5], 'pattern', ARGV[6], 'trigger', ARGV[2])
end
return 1
