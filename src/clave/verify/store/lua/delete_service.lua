-- TenantStore.delete_tenant.
-- ARGV: prefix, tenant id. API keys point at their tenant; a key whose tenant is gone stops
-- resolving (key_for_hash finds no tenant), so only the tenant and its name go here.
local P, id = ARGV[1], ARGV[2]
local name = redis.call('HGET', P .. 'svc:' .. id, 'name')
if not name then return 0 end
redis.call('DEL', P .. 'svc:' .. id)
redis.call('HDEL', P .. 'svc-names', name)
return 1
