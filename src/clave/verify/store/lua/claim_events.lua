-- EventLog.claim_events. A retry is a lease running to the next try.
-- ARGV: prefix, consumer, now, lease_until, limit
local P, consumer, now, lease_until, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4],
  tonumber(ARGV[5])
local stream, leases, tries = P .. 'events', P .. 'events:leases', P .. 'events:tries'
local entries = take(stream, leases, 'notify', consumer, now, limit)
local out = {}
for _, e in ipairs(entries) do
  local id, f = e[1], {}
  for i = 1, #e[2], 2 do f[e[2][i]] = e[2][i + 1] end
  redis.call('ZADD', leases, lease_until, id)
  local n = redis.call('HINCRBY', tries, id, 1)
  table.insert(out, {id, f.type, f.vid, f.sid, f.at, n})
end
return out
