-- Outbox.claim_deliveries.
-- ARGV: prefix, consumer, now, lease_until, limit
local consumer, now, lease_until, limit = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local stream, later, leases = P .. 'outbox', P .. 'outbox:later', P .. 'outbox:leases'
for _, aid in ipairs(redis.call('ZRANGEBYSCORE', later, '-inf', now, 'LIMIT', 0, limit)) do
  redis.call('XADD', stream, '*', 'aid', aid)
  redis.call('ZREM', later, aid)
end
-- Entries whose lease ran out (their dispatcher died or hung): take them over. Leases are kept
-- on clave's clock, like every other time here, not on Redis's idle timers.
local entries = take(stream, leases, 'dispatch', consumer, now, limit)
local out = {}
for _, e in ipairs(entries) do
  local id, aid = e[1], e[2][2]
  local ak = P .. 'a:' .. aid
  local vid = redis.call('HGET', ak, 'vid')
  if not vid or redis.call('EXISTS', vkey(vid)) == 0 then
    -- The verification expired and its keys are gone: nothing left to send.
    redis.call('XACK', stream, 'dispatch', id)
    redis.call('XDEL', stream, id)
    redis.call('ZREM', leases, id)
  else
    redis.call('ZADD', leases, lease_until, id)
    local tries = redis.call('HINCRBY', ak, 'tries', 1)
    local a = redis.call('HMGET', ak, 'channel', 'to', 'locale', 'options')
    -- The name as every clave of the move writes it (store/encoding.py: legacy_fields).
    local name = redis.call('HGET', P .. 'svc:' .. field(vid, 'service_id'), 'friendly_name') or ''
    table.insert(out, {id, aid, tries, a[1], a[2], a[3], name, load(vid), a[4] or ''})
  end
end
return out
