-- Shared by the outbox and event claims: entries whose lease ran out, taken over, then new ones.
-- Defines take(stream, leases, group, consumer, now, limit).
local function take(stream, leases, group, consumer, now, limit)
  local entries = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, limit)) do
    local got = redis.call('XCLAIM', stream, group, consumer, 0, id)
    if #got > 0 and got[1] then
      table.insert(entries, got[1])
    else
      redis.call('ZREM', leases, id)  -- acknowledged meanwhile
    end
  end
  if #entries < limit then
    local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #entries,
      'STREAMS', stream, '>')
    if fresh then for _, e in ipairs(fresh[1][2]) do table.insert(entries, e) end end
  end
  return entries
end
