-- FactorStore.add_entity, as store/memory.py: an identity has one entity (the first stored).
-- ARGV: prefix, tenant id, identity, sid, created_at. Returns {sid, created_at} as stored.
local P, tenant, identity = ARGV[1], ARGV[2], ARGV[3]
local key = P .. 'entity:' .. tenant .. ':' .. identity
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'sid', ARGV[4], 'created_at', ARGV[5])
  redis.call('ZADD', P .. 'entities:' .. tenant, ARGV[5], identity)
end
return redis.call('HMGET', key, 'sid', 'created_at')
