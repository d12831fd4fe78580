-- FactorStore.delete_entity, as store/memory.py: the entity, its factors and its challenges.
-- ARGV: prefix, tenant id, identity. Returns 1 when there was one.
local P, tenant, identity = ARGV[1], ARGV[2], ARGV[3]
local key = P .. 'entity:' .. tenant .. ':' .. identity
if redis.call('DEL', key) == 0 then return 0 end
redis.call('ZREM', P .. 'entities:' .. tenant, identity)
local factors = P .. 'factors:' .. tenant .. ':' .. identity
for _, fid in ipairs(redis.call('SMEMBERS', factors)) do redis.call('DEL', P .. 'factor:' .. fid) end
redis.call('DEL', factors)
local challenges = P .. 'challenges:' .. tenant .. ':' .. identity
for _, sid in ipairs(redis.call('ZRANGE', challenges, 0, -1)) do
  redis.call('DEL', P .. 'challenge:' .. sid)
end
redis.call('DEL', challenges)
return 1
