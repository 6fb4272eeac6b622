-- A running attempt's heartbeat, with its progress when it changed. Replies 0 (go on), 1 (a stop was asked)
-- or 2 (this attempt no longer owns the task: it ended, or was re-queued after its lease ran out).
-- KEYS: record, leases, events
-- ARGV: id, attempt, progress JSON ('' for a heartbeat only), message JSON, lease deadline, events maxlen, now µs
--@include record
local raw = redis.call('GET', KEYS[1])
if not raw then return 2 end
local f = split(raw)
if f[F.state] ~= '"running"' or f[F.attempts] ~= ARGV[2] then return 2 end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
if ARGV[3] ~= '' and (f[F.progress] ~= ARGV[3] or f[F.message] ~= ARGV[4]) then
  f[F.progress] = ARGV[3]
  f[F.message] = ARGV[4]
  bump(f)
  redis.call('SET', KEYS[1], join(f))
  emit(KEYS[3], ARGV[6], ARGV[1], f, 'p', ARGV[7])
end
if f[F.cancel] == '1' then return 1 end
return 0
