-- TenantStore.add_api_key.
-- ARGV: prefix, id, tenant id, hash (hex), created_at, name, expires_at ('' for none)
local P, id = ARGV[1], ARGV[2]
redis.call('HSET', P .. 'apikey:' .. id, 'service_id', ARGV[3], 'hash', ARGV[4],
  'created_at', ARGV[5], 'name', ARGV[6], 'expires_at', ARGV[7])
redis.call('SET', P .. 'key:' .. ARGV[4], id)
redis.call('ZADD', P .. 'apikeys', ARGV[5], id)
return 1
