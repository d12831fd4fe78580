-- VerificationStore.latest_sent.
-- ARGV: prefix, service id, destination, since
local sent = redis.call('ZREVRANGEBYSCORE', P .. 'sends:' .. ARGV[2] .. ':' .. ARGV[3],
  '+inf', '(' .. ARGV[4], 'LIMIT', 0, 1)
if #sent == 0 then return nil end
local vid = redis.call('HGET', P .. 'a:' .. sent[1], 'vid')
if not vid or field(vid, 'service_id') ~= ARGV[2] then return nil end
return load(vid)
