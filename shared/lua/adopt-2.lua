-- A Celery task queued for long (the broker holds its message) gets a lease that has already run out, as
-- if its message were unsent: the sweep sends it again. Replies 1 if adopted, 0 if not (not queued on Celery,
-- already leased, or queued, or sent again, more recently than ARGV[3] µs ago).
-- KEYS: record, leases
-- ARGV: id, now µs, age µs, now (s, the lease's deadline)
--@include record
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local f = split(raw)
if f[F.state] ~= '"queued"' or f[F.executor] ~= '"celery"' or f[F.lease] ~= '' then return 0 end
local since = math.max(tonumber(f[F.created_us]), tonumber(f[F.resent_us]))
if tonumber(ARGV[2]) - since < tonumber(ARGV[3]) then return 0 end
f[F.lease] = 'd'
f[F.resent_us] = ARGV[2]
redis.call('SET', KEYS[1], join(f))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
