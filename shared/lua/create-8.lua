-- A new queued record, unless its Idempotency-Key already names a task (then: that id, or a conflict).
-- KEYS: record, active index, leases, events, idempotency key, names, owners, broker queue (or the record again)
-- ARGV: id, fingerprint ('' without a key), ttl, created µs, lease deadline ('' none), lease kind, events maxlen,
--       registration score ('' to skip), name, owner, record, publish command ('' none), its values...
--@include record
if ARGV[2] ~= '' then
  local known = redis.call('GET', KEYS[5])
  if known then
    local at = string.find(known, SEP, 1, true)
    if string.sub(known, at + 1) ~= ARGV[2] then return {'conflict'} end
    return {'existing', string.sub(known, 1, at - 1)}
  end
  redis.call('SET', KEYS[5], ARGV[1] .. SEP .. ARGV[2], 'EX', ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[11])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1]) end
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[6], ARGV[8], ARGV[9])
  redis.call('ZADD', KEYS[7], ARGV[8], ARGV[10])
end
-- The Celery message, when the broker is this Redis: stored and sent atomically, so neither exists alone.
if ARGV[12] ~= '' then redis.call(ARGV[12], KEYS[8], unpack(ARGV, 13)) end
emit(KEYS[4], ARGV[7], ARGV[1], split(ARGV[11]), 's', ARGV[4])
return {'created'}
