-- VerificationStore.transition: `close` (prelude) only if the status is still ARGV[3].
-- ARGV: prefix, verification id, from status, to status, now
return close(ARGV[2], ARGV[3], ARGV[4], ARGV[5])
