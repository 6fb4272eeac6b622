-- A lease that ran out, judged by Redis's own clock (TIME), never the caller's. A stop was asked: `cancelled`.
-- A Celery task with attempts left (or never sent, or waiting out a retry) is queued again, to be sent by the
-- caller if it can (ARGV[3]), leased until that send is confirmed. Anything else ends `lost`.
-- Safe from many processes at once: the first one to act moves the deadline or removes it.
-- Replies {'skip'}, {'gone'}, {'requeue'}, {'cancelled'} or {'lost'}.
-- KEYS: record, leases, active index, cancelled index, lost index, events
-- ARGV: id, lease seconds, can requeue ('1'), worker-lost error JSON, process-lost error JSON,
--       never-started error JSON, now (JSON time), now µs, ttl, events maxlen
--@include record
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) > now then return {'skip'} end
local raw = redis.call('GET', KEYS[1])
if not raw then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone'}
end
local f = split(raw)
local running = f[F.state] == '"running"'
if not running and f[F.state] ~= '"queued"' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return {'gone'}
end
local outcome, err = 'lost', ARGV[6]
if running or f[F.lease] == 'b' then err = ARGV[5] end
if running and f[F.cancel] == '1' then
  outcome, err = 'cancelled', 'null'
elseif f[F.executor] == '"celery"' and (not running or tonumber(f[F.attempts]) < tonumber(f[F.max_attempts])) then
  if ARGV[3] ~= '1' then return {'skip'} end
  if running then
    attempt_failed(f, ARGV[4], ARGV[7])
    f[F.error] = ARGV[4]
    enter(f, 'queued', ARGV[7])
    bump(f)
    emit(KEYS[6], ARGV[10], ARGV[1], f, 's', ARGV[8])
  end
  f[F.lease] = 'd'
  redis.call('SET', KEYS[1], join(f))
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
  return {'requeue'}
end
if running and outcome == 'lost' then attempt_failed(f, err, ARGV[7]) end
f[F.error] = err
f[F.lease] = ''
f[F.finished_at] = ARGV[7]
enter(f, outcome, ARGV[7])
bump(f)
redis.call('SET', KEYS[1], join(f), 'EX', ARGV[9])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if outcome == 'cancelled' then
  redis.call('ZADD', KEYS[4], f[F.created_us], ARGV[1])
else
  redis.call('ZADD', KEYS[5], f[F.created_us], ARGV[1])
end
emit(KEYS[6], ARGV[10], ARGV[1], f, 's', ARGV[8])
return {outcome}
