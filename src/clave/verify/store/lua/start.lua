-- Mirrors models.decide_start, applied as VerificationStore.start does (store/memory.py).
-- ARGV: prefix, now, window, max_sends, channel, locale, retention, deliver (1/0), options
-- (JSON), then the candidate's fields as name/value pairs.
local now, window, max_sends = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local channel, locale, retention = ARGV[5], ARGV[6], tonumber(ARGV[7])
local deliver, options = ARGV[8] == '1', ARGV[9]
local c = {}
for i = 10, #ARGV, 2 do c[ARGV[i]] = ARGV[i + 1] end
local pk = P .. 'pending:' .. c.service_id .. ':' .. c.to
local vid = redis.call('GET', pk)
if vid then
  local status, expires = field(vid, 'status'), tonumber(field(vid, 'expires_at') or '0')
  if status ~= 'pending' then
    vid = nil
  elseif now >= expires then
    close(vid, 'pending', 'expired', ARGV[2])
    vid = nil
  end
end
local zk = P .. 'sends:' .. c.service_id .. ':' .. c.to
-- In the window: sent after now - window (as count_check and the other backends count).
redis.call('ZREMRANGEBYSCORE', zk, '-inf', tostring(now - window))
local count = redis.call('ZCARD', zk)
if count >= max_sends then
  local oldest = redis.call('ZRANGE', zk, 0, 0, 'WITHSCORES')
  return {'limited', tostring(tonumber(oldest[2]) + window), count, vid or ''}
end
if vid and (field(vid, 'binding') or '') ~= (c.binding or '') then
  -- What the code would mean changed: the old code dies, a new one starts.
  close(vid, 'pending', 'canceled', ARGV[2])
  vid = nil
end
local created = 0
local expires_at
if not vid then
  vid = c.id
  created = 1
  expires_at = tonumber(c.expires_at)
  local fields = {}
  for k, v in pairs(c) do table.insert(fields, k); table.insert(fields, v) end
  redis.call('HSET', vkey(vid), unpack(fields))
  -- Kept past the expiry (as long as the verification's keys): the next start or check on
  -- the destination finds a stale one and closes it as expired (models.decide_start).
  redis.call('SET', pk, vid, 'PXAT', math.floor((expires_at + retention) * 1000))
  redis.call('ZADD', P .. 'expiring', expires_at, vid)
else
  expires_at = tonumber(field(vid, 'expires_at'))
  redis.call('HSET', vkey(vid), 'channel', channel, 'updated_at', ARGV[2])
end
local keep_until = math.floor(expires_at + retention)
local aid = tostring(redis.call('INCR', P .. 'seq:attempt'))
redis.call('HSET', P .. 'a:' .. aid, 'vid', vid, 'service_id', c.service_id, 'to', c.to,
  'channel', channel, 'locale', locale, 'status', deliver and 'queued' or 'skipped',
  'options', options, 'created_at', ARGV[2],
  'updated_at', ARGV[2], 'tries', 0)
redis.call('EXPIREAT', P .. 'a:' .. aid, keep_until)
-- The attempts log (store/redis_attempts.py): each tenant's sends by time, each send by its
-- sid, kept as long as the sends are (a send's keys go at most a day of code life plus the
-- retention after it was made).
local log = P .. 'attempts:' .. c.service_id
redis.call('ZADD', log, now, aid)
redis.call('ZREMRANGEBYSCORE', log, '-inf', tostring(now - retention - 86400))
if redis.call('TTL', log) < keep_until - now then redis.call('EXPIREAT', log, keep_until) end
if options ~= '' then
  local sid = cjson.decode(options)['attempt_sid']
  if sid then redis.call('SET', P .. 'attempt-sid:' .. sid, aid, 'EXAT', keep_until) end
end
redis.call('RPUSH', vkey(vid) .. ':att', aid)
redis.call('EXPIREAT', vkey(vid) .. ':att', keep_until)
redis.call('EXPIREAT', vkey(vid), keep_until)
redis.call('ZADD', zk, now, aid)
redis.call('EXPIRE', zk, math.ceil(window) + 1)
if deliver then redis.call('XADD', P .. 'outbox', '*', 'aid', aid) end
return {'ok', vid, created, count + 1, load(vid)}
