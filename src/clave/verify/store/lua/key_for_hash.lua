-- TenantStore.key_for_hash.
-- ARGV: prefix, key hash (hex). `key:<hash>` names the key; `apikey:<id>` holds its life cycle.
local P = ARGV[1]
local kid = redis.call('GET', P .. 'key:' .. ARGV[2])
if not kid then return nil end
local k = redis.call('HGETALL', P .. 'apikey:' .. kid)
if #k == 0 then return nil end
local sid = redis.call('HGET', P .. 'apikey:' .. kid, 'service_id')
local s = redis.call('HGETALL', P .. 'svc:' .. sid)
if #s == 0 then return nil end
table.insert(k, 'id'); table.insert(k, kid)
table.insert(s, 'id'); table.insert(s, sid)
return {k, s}
