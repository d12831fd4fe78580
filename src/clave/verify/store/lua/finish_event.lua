-- EventLog.finish_event.
-- ARGV: prefix, entry id
redis.call('XACK', ARGV[1] .. 'events', 'notify', ARGV[2])
redis.call('XDEL', ARGV[1] .. 'events', ARGV[2])
redis.call('ZREM', ARGV[1] .. 'events:leases', ARGV[2])
redis.call('HDEL', ARGV[1] .. 'events:tries', ARGV[2])
return 1
