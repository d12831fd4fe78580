-- Mirrors models.all_sends_failed: a pending verification whose every attempt failed fails.
-- Defines fail_if_all_failed(vid, now).
local function fail_if_all_failed(vid, now)
  for _, aid in ipairs(redis.call('LRANGE', vkey(vid) .. ':att', 0, -1)) do
    local st = redis.call('HGET', P .. 'a:' .. aid, 'status')
    if st ~= 'failed' and st ~= 'undelivered' then return end
  end
  close(vid, 'pending', 'failed', now)
end
