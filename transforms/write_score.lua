-- Store one model score of a user, newest first: the score of a later event time wins.
--
-- KEYS[1]  the user's scores hash   mt:NS:scores:USER   (or a product's mt:NS:similar:ITEM)
-- KEYS[2]  the user's erasure tombstone (a string: erased-at ms, usually absent; none for a
--          product's similar items)
-- ARGV[1]  the model    ARGV[2] the score    ARGV[3] the model version
-- ARGV[4]  the event time (ms) the score is as of    ARGV[5] TTL in seconds (0: none)
--
-- Fields: MODEL (the score), MODEL:version, MODEL:at. Returns 1 if written, 0 if a score as
-- of a later time is stored, 2 if the user was erased at or after that time. A score as of
-- the same time replaces the stored one: a learner that took in a late input gives its
-- scores since then again, corrected (a retried write rewrites the same values).
if #KEYS > 1 then
  local erased = redis.call('GET', KEYS[2])
  if erased and tonumber(ARGV[4]) <= tonumber(erased) then
    return 2
  end
end
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'hash' then
  return redis.error_reply(KEYS[1] .. ' holds a ' .. kind)
end
local stored = redis.call('HGET', KEYS[1], ARGV[1] .. ':at')
if stored and tonumber(stored) > tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[1] .. ':version', ARGV[3], ARGV[1] .. ':at', ARGV[4])
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
return 1
