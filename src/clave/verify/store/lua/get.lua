-- VerificationStore.get.
-- ARGV: prefix, service id, verification id
if field(ARGV[3], 'service_id') ~= ARGV[2] then return nil end
return load(ARGV[3])
