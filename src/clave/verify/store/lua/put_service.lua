-- TenantStore.put_tenant: names are unique.
-- ARGV: prefix, id, name, then field/value pairs
local P, id, name = ARGV[1], ARGV[2], ARGV[3]
local owner = redis.call('HGET', P .. 'svc-names', name)
if owner and owner ~= id then return redis.error_reply('service name taken') end
local old = redis.call('HGET', P .. 'svc:' .. id, 'name')
if old and old ~= name then redis.call('HDEL', P .. 'svc-names', old) end
local fields = {}
for i = 4, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', P .. 'svc:' .. id, 'name', name, unpack(fields))
redis.call('HSET', P .. 'svc-names', name, id)
return 1
