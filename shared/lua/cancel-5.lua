-- DELETE, and a Celery revoke: a queued task ends `cancelled` at once; a running one is asked to stop (or,
-- with ARGV[6] = '1', its process was killed by the revoke: it ends `cancelled` now); an ended one is left.
-- Replies {outcome, the stored record after it}, or false if there is no such task.
-- KEYS: record, leases, active index, cancelled index, events
-- ARGV: id, now (JSON time), now µs, ttl, events maxlen, running attempt was terminated ('1' or '')
--@include record
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local f = split(raw)
local state = f[F.state]
if state == '"running"' and ARGV[6] ~= '1' then
  if f[F.cancel] ~= '1' then
    f[F.cancel] = '1'
    raw = join(f)
    redis.call('SET', KEYS[1], raw)
  end
  return {'stopping', raw}
end
if state ~= '"queued"' and state ~= '"running"' then return {'finished', raw} end
if f[F.lease] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
f[F.lease] = ''
f[F.finished_at] = ARGV[2]
enter(f, 'cancelled', ARGV[2])
bump(f)
raw = join(f)
redis.call('SET', KEYS[1], raw, 'EX', ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], f[F.created_us], ARGV[1])
emit(KEYS[5], ARGV[5], ARGV[1], f, 's', ARGV[3])
return {'cancelled', raw}
