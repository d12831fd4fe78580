-- FactorStore.replace_secret: the new sealed secret only if the stored one is still the one
-- the caller read (a concurrent rekey wins once).
-- ARGV: prefix, factor id, old key id, old nonce, old secret, new key id, new nonce, new secret
local key = ARGV[1] .. 'factor:' .. ARGV[2]
local now = redis.call('HMGET', key, 'key_id', 'nonce', 'secret')
if now[1] ~= ARGV[3] or now[2] ~= ARGV[4] or now[3] ~= ARGV[5] then return 0 end
redis.call('HSET', key, 'key_id', ARGV[6], 'nonce', ARGV[7], 'secret', ARGV[8])
return 1
