-- EventLog.expire_due: mirrors models.is_stale over the expiring set.
-- ARGV: prefix, now, limit
local count = 0
for _, vid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'expiring', '-inf', ARGV[2], 'LIMIT', 0,
    tonumber(ARGV[3]))) do
  if redis.call('EXISTS', vkey(vid)) == 0 or field(vid, 'status') ~= 'pending' then
    redis.call('ZREM', P .. 'expiring', vid)
  else
    count = count + close(vid, 'pending', 'expired', ARGV[2])
  end
end
return count
