-- CounterStore.release: give hits back to the slot they were counted in.
-- KEYS: one per limit; ARGV: the time the hits were counted, then slot and cost per key.
local at = tonumber(ARGV[1])
for i, base in ipairs(KEYS) do
  local slot, cost = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  local key = base .. ':' .. math.floor(at / slot)
  local current = tonumber(redis.call('GET', key) or '0')
  if current > 0 then redis.call('DECRBY', key, math.min(cost, current)) end
end
return 1
