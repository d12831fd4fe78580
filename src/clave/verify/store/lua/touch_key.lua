-- TenantStore.touch_api_key.
-- ARGV: prefix, key id, now
local k = ARGV[1] .. 'apikey:' .. ARGV[2]
if redis.call('EXISTS', k) == 1 then redis.call('HSET', k, 'last_used_at', ARGV[3]) end
return 1
