-- Outbox.finish_delivery.
-- ARGV: prefix, entry id, attempt id, status, provider, error, now, provider message id
local stream = P .. 'outbox'
redis.call('XACK', stream, 'dispatch', ARGV[2])
redis.call('XDEL', stream, ARGV[2])
redis.call('ZREM', P .. 'outbox:leases', ARGV[2])
local ak = P .. 'a:' .. ARGV[3]
if redis.call('EXISTS', ak) == 0 then return 0 end
redis.call('HSET', ak, 'status', ARGV[4], 'provider', ARGV[5], 'error', ARGV[6],
  'updated_at', ARGV[7], 'provider_message_id', ARGV[8])
if ARGV[8] ~= '' then
  -- Find the attempt again when the provider reports on it; gone with the attempt.
  local ik = P .. 'pmid:' .. ARGV[5] .. ':' .. ARGV[8]
  redis.call('SET', ik, ARGV[3])
  redis.call('EXPIREAT', ik, redis.call('EXPIRETIME', ak))
end
fail_if_all_failed(redis.call('HGET', ak, 'vid'), ARGV[7])
return 1
