-- VerificationStore.report_delivery; models.reportable is applied by passing the statuses it
-- allows as ARGV[7...].
-- ARGV: prefix, provider, provider message id, status, error, now, allowed previous statuses
local aid = redis.call('GET', P .. 'pmid:' .. ARGV[2] .. ':' .. ARGV[3])
if not aid then return -1 end
local ak = P .. 'a:' .. aid
local current = redis.call('HGET', ak, 'status')
if not current then return -1 end
local allowed = false
for i = 7, #ARGV do if ARGV[i] == current then allowed = true end end
if not allowed then return 0 end
redis.call('HSET', ak, 'status', ARGV[4], 'error', ARGV[5], 'updated_at', ARGV[6])
fail_if_all_failed(redis.call('HGET', ak, 'vid'), ARGV[6])
return 1
