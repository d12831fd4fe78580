-- Outbox.retry_delivery.
-- ARGV: prefix, entry id, attempt id, next attempt at, error
redis.call('XACK', P .. 'outbox', 'dispatch', ARGV[2])
redis.call('XDEL', P .. 'outbox', ARGV[2])
redis.call('ZREM', P .. 'outbox:leases', ARGV[2])
redis.call('ZADD', P .. 'outbox:later', ARGV[4], ARGV[3])
redis.call('HSET', P .. 'a:' .. ARGV[3], 'error', ARGV[5])
return 1
