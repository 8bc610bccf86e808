-- Publish one message to a topic stream at most once, unless its user was erased since.
--
-- KEYS[1]  the id guard (a string key; its presence means "already published")
-- KEYS[2]  the user's erasure tombstone (a string: erased-at ms, usually absent)
-- KEYS[3]  the topic stream
-- ARGV[1]  TTL in seconds of the guard (0: no expiry)
-- ARGV[2]  approximate MAXLEN of the stream
-- ARGV[3]  the event time (ms) of the oldest data the message carries
-- ARGV[4..] the stream entry's field/value pairs
--
-- Returns 1 if published now, 0 if the id was published before, 2 if the user was
-- erased at or after ARGV[3]. Checks come before writes; the guard is written last.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
local erased = redis.call('GET', KEYS[2])
if erased and tonumber(ARGV[3]) <= tonumber(erased) then
  return 2
end
local stream_type = redis.call('TYPE', KEYS[3])['ok']
if stream_type ~= 'none' and stream_type ~= 'stream' then
  return redis.error_reply('topic stream ' .. KEYS[3] .. ' holds a ' .. stream_type)
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4))
local ttl = tonumber(ARGV[1])
if ttl > 0 then
  redis.call('SET', KEYS[1], '1', 'EX', ttl)
else
  redis.call('SET', KEYS[1], '1')
end
return 1
