-- TenantStore.revoke_api_key.
-- ARGV: prefix, key id, now
local k = ARGV[1] .. 'apikey:' .. ARGV[2]
if redis.call('EXISTS', k) == 0 then return 0 end
local revoked = redis.call('HGET', k, 'revoked_at')
if revoked and revoked ~= '' then return 0 end
redis.call('HSET', k, 'revoked_at', ARGV[3])
return 1
