-- A key stored before keys had a life cycle (`key:<hash>` naming its tenant) is given a
-- record of its own, once, by whoever runs it first.
-- ARGV: prefix, key hash (hex), new key id, now
local P = ARGV[1]
local sid = redis.call('GET', P .. 'key:' .. ARGV[2])
if not sid or redis.call('EXISTS', P .. 'apikey:' .. sid) == 1 then return 0 end
redis.call('HSET', P .. 'apikey:' .. ARGV[3], 'service_id', sid, 'hash', ARGV[2],
  'created_at', ARGV[4], 'name', 'from before key life cycles', 'expires_at', '')
redis.call('SET', P .. 'key:' .. ARGV[2], ARGV[3])
redis.call('ZADD', P .. 'apikeys', ARGV[4], ARGV[3])
return 1
