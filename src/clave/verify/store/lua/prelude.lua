-- Shared by the verification scripts: reading a verification back, and `close`, which mirrors
-- models.can_close and models.event_type.
-- ARGV[1] is always the key prefix.
local P = ARGV[1]
local function vkey(vid) return P .. 'v:' .. vid end
local function load(vid)
  local v = redis.call('HGETALL', vkey(vid))
  if #v == 0 then return nil end
  local ids = redis.call('LRANGE', vkey(vid) .. ':att', 0, -1)
  local attempts = {}
  for i, aid in ipairs(ids) do
    local a = redis.call('HGETALL', P .. 'a:' .. aid)
    if #a > 0 then table.insert(a, 'id'); table.insert(a, aid); table.insert(attempts, a) end
  end
  return {v, attempts}
end
local function field(vid, name) return redis.call('HGET', vkey(vid), name) end
local FINAL = {approved = true, canceled = true, expired = true, max_attempts_reached = true,
  failed = true}
local function close(vid, from, to, now)
  -- models.can_close: only a pending verification changes, and only to a final status.
  if from ~= 'pending' or not FINAL[to] then return 0 end
  if field(vid, 'status') ~= from then return 0 end
  redis.call('HSET', vkey(vid), 'status', to, 'updated_at', now)
  local pk = P .. 'pending:' .. field(vid, 'service_id') .. ':' .. field(vid, 'to')
  if redis.call('GET', pk) == vid then redis.call('DEL', pk) end
  redis.call('ZREM', P .. 'expiring', vid)
  if redis.call('EXISTS', P .. 'events-on') == 1 then
    -- models.event_type. In the same script as the change: never lost, never raised twice.
    redis.call('XADD', P .. 'events', '*', 'type', 'verification.' .. to, 'vid', vid,
      'sid', field(vid, 'service_id'), 'at', now)
  end
  return 1
end
