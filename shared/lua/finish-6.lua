-- An attempt ends: in a terminal state, or (a failure with attempts left and a retry deadline) queued again.
-- Modes: 'attempt' (the running attempt ARGV[3]), 'lazy' (a queued task that ran without a start written:
-- its start is written now, with its end), 'queued' (a task that never started).
-- A stop asked while it ran makes it end `cancelled`, whatever it returned: the DELETE answer said so.
-- Replies {1, the state it ended in}, {2, 'queued'} (queued for a retry) or {0, ''} (not ours: nothing changed).
-- KEYS: record, leases, active index, the index of `state` (ARGV[4]), the cancelled index, events
-- ARGV: id, mode, attempt, state, result JSON, error JSON, now (JSON time), now µs, progress JSON ('' keeps it),
--       message JSON ('' keeps it), ttl, events maxlen, retry deadline ('' no retry), worker JSON, started JSON,
--       started µs (the last three for 'lazy')
--@include record
local raw = redis.call('GET', KEYS[1])
if not raw then return {0, ''} end
local f = split(raw)
local mode = ARGV[2]
if mode == 'lazy' and f[F.state] == '"running"' and f[F.started_us] == ARGV[16] and f[F.worker] == ARGV[14] then
  mode = 'attempt'  -- its start was written after all (a claim whose reply was lost)
elseif mode == 'attempt' then
  if f[F.state] ~= '"running"' or f[F.attempts] ~= ARGV[3] then return {0, ''} end
end
if mode ~= 'attempt' and f[F.state] ~= '"queued"' then
  return {0, ''}
end
if mode == 'lazy' then
  f[F.attempts] = tostring(tonumber(f[F.attempts]) + 1)
  f[F.worker] = ARGV[14]
  f[F.started_at] = ARGV[15]
  f[F.started_us] = ARGV[16]
  enter(f, 'running', ARGV[15])
end
local state, err = ARGV[4], ARGV[6]
if f[F.cancel] == '1' then state, err = 'cancelled', 'null' end
if ARGV[10] ~= '' then f[F.message] = ARGV[10] end
if f[F.lease] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end
if mode ~= 'queued' and err ~= 'null' then attempt_failed(f, err, ARGV[7]) end
bump(f)
if ARGV[13] ~= '' and state == 'failed' and tonumber(f[F.attempts]) < tonumber(f[F.max_attempts]) then
  f[F.error] = err
  f[F.lease] = 'b'
  enter(f, 'queued', ARGV[7])
  redis.call('SET', KEYS[1], join(f))
  redis.call('ZADD', KEYS[2], ARGV[13], ARGV[1])
  local kind = 's'
  if mode == 'lazy' then kind = 'r' end
  emit(KEYS[6], ARGV[12], ARGV[1], f, kind, ARGV[8])
  return {2, 'queued'}
end
f[F.lease] = ''
f[F.finished_at] = ARGV[7]
f[F.error] = err
if state == 'succeeded' then
  f[F.result] = ARGV[5]
  if ARGV[9] ~= '' then f[F.progress] = ARGV[9] end
end
enter(f, state, ARGV[7])
redis.call('SET', KEYS[1], join(f), 'EX', ARGV[11])
redis.call('ZREM', KEYS[3], ARGV[1])
local index = KEYS[4]
if state ~= ARGV[4] then index = KEYS[5] end  -- a stop asked while it ran: cancelled
redis.call('ZADD', index, f[F.created_us], ARGV[1])
local kind = 's'
if mode == 'lazy' then kind = 'r' end
emit(KEYS[6], ARGV[12], ARGV[1], f, kind, ARGV[8])
return {1, state}
