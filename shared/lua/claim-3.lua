-- Queued -> running under a lease. Replies the attempt number, or 0 if the task is not queued (it ended, was
-- cancelled, or another delivery runs it): a task never starts twice.
-- KEYS: record, leases, events
-- ARGV: id, worker (JSON), start (JSON time), start µs, lease deadline, events maxlen
--@include record
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local f = split(raw)
if f[F.state] == '"running"' and f[F.started_us] == ARGV[4] and f[F.worker] == ARGV[2] then
  return tonumber(f[F.attempts])  -- this very claim, whose reply was lost: claiming is idempotent
end
if f[F.state] ~= '"queued"' then return 0 end
f[F.attempts] = tostring(tonumber(f[F.attempts]) + 1)
f[F.worker] = ARGV[2]
f[F.started_at] = ARGV[3]
f[F.started_us] = ARGV[4]
f[F.lease] = 'r'
enter(f, 'running', ARGV[3])
bump(f)
redis.call('SET', KEYS[1], join(f))
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
emit(KEYS[3], ARGV[6], ARGV[1], f, 's', ARGV[4])
return tonumber(f[F.attempts])
