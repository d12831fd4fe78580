-- FactorStore.accept_step, as store/memory.py applies it: only a time step newer than the
-- factor's last accepted one moves it there (RFC 6238's replay rule) and verifies it, with its
-- event in the same script (never lost, never raised twice).
-- ARGV: prefix, tenant id, factor id, step, now, event type
local P, tenant, fid, step, now, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key = P .. 'factor:' .. fid
if redis.call('HGET', key, 'tenant_id') ~= tenant then return 0 end
if tonumber(redis.call('HGET', key, 'last_step')) >= tonumber(step) then return 0 end
redis.call('HSET', key, 'last_step', step, 'status', 'verified', 'updated_at', now)
if redis.call('EXISTS', P .. 'events-on') == 1 then
  redis.call('XADD', P .. 'events', '*', 'type', kind, 'vid', fid, 'sid', tenant, 'at', now)
end
return 1
