-- VerificationStore.find_pending.
-- ARGV: prefix, service id, destination
local vid = redis.call('GET', P .. 'pending:' .. ARGV[2] .. ':' .. ARGV[3])
if not vid or field(vid, 'status') ~= 'pending' then return nil end
return load(vid)
