-- Mirrors store/counters.py's _estimate and MemoryCounters.hit (the counters contract suite
-- proves they agree): the sliding estimate, or the exact sum of a strict limit's slots.
-- KEYS: one per limit; ARGV: now, then per key its slot (seconds per counter), count, cost and
-- span (0: the sliding estimate over two windows; n: a strict limit, the exact sum of the last
-- n + 1 slots). Mirrors _estimate and MemoryCounters.hit; the counters contract suite proves
-- they agree.
local now = tonumber(ARGV[1])
for i, base in ipairs(KEYS) do
  local slot, max = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i - 1])
  local span = tonumber(ARGV[4 * i + 1])
  local index = math.floor(now / slot)
  if span > 0 then
    local values, total = {}, 0
    for j = index - span, index do
      local value = tonumber(redis.call('GET', base .. ':' .. j) or '0')
      table.insert(values, value)
      total = total + value
    end
    local excess, freed = total + 1 - max, 0
    if excess > 0 then
      for k, value in ipairs(values) do
        freed = freed + value
        if freed >= excess then return {i, tostring((index + k) * slot - now)} end
      end
    end
  else
    local previous = tonumber(redis.call('GET', base .. ':' .. (index - 1)) or '0')
    local current = tonumber(redis.call('GET', base .. ':' .. index) or '0')
    local start = index * slot
    local overlap = 1 - (now - start) / slot
    if previous * overlap + current + 1 > max then
      if current > 0 then return {i, tostring(start + slot - now)} end
      return {i, tostring(math.max(overlap * slot, 1))}
    end
  end
end
for i, base in ipairs(KEYS) do
  local slot, cost = tonumber(ARGV[4 * i - 2]), tonumber(ARGV[4 * i])
  local span = math.max(tonumber(ARGV[4 * i + 1]), 1)
  if cost > 0 then
    local key = base .. ':' .. math.floor(now / slot)
    redis.call('INCRBY', key, cost)
    redis.call('EXPIRE', key, math.ceil(slot * (span + 1)) + 1)
  end
end
return false
