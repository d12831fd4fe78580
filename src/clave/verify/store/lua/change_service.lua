-- TenantStore.change_tenant: write a changed policy and accounts only if nobody changed them
-- since the caller read them (compare and set; the caller reads again and retries on 0).
-- ARGV: prefix, id, the policy and accounts as read ('' when absent), then field/value pairs.
-- Returns -1 when the tenant is gone (never recreated here), 0 when it changed, 1 when written.
local P, id = ARGV[1], ARGV[2]
local key = P .. 'svc:' .. id
if redis.call('EXISTS', key) == 0 then return -1 end
if (redis.call('HGET', key, 'policy') or '') ~= ARGV[3] then return 0 end
if (redis.call('HGET', key, 'accounts') or '') ~= ARGV[4] then return 0 end
local fields = {}
for i = 5, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', key, unpack(fields))
return 1
