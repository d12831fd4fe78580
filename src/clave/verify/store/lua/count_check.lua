-- Mirrors models.decide_check, applied as VerificationStore.count_check does.
-- ARGV: prefix, service id, verification id or '', destination or '', now, window
local sid, vid, to, now, window = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
if vid == '' then vid = redis.call('GET', P .. 'pending:' .. sid .. ':' .. to) end
if not vid or field(vid, 'service_id') ~= sid then return {'not_found'} end
local status = field(vid, 'status')
local zk = P .. 'sends:' .. sid .. ':' .. field(vid, 'to')
local sends = redis.call('ZCOUNT', zk, '(' .. tostring(now - window), '+inf')
if status == 'max_attempts_reached' then return {'locked', load(vid), sends} end
if status ~= 'pending' then return {'not_found'} end
if now >= tonumber(field(vid, 'expires_at')) then
  close(vid, 'pending', 'expired', ARGV[5])
  return {'not_found'}
end
if tonumber(field(vid, 'check_attempts')) >= tonumber(field(vid, 'max_checks')) then
  return {'locked', load(vid), sends}
end
redis.call('HINCRBY', vkey(vid), 'check_attempts', 1)
redis.call('HSET', vkey(vid), 'updated_at', ARGV[5])
return {'counted', load(vid), sends}
