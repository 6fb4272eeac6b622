-- The Celery message of a queued task is on the broker now: the broker, not a lease, keeps it from here.
-- KEYS: record, leases
-- ARGV: id
--@include record
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local f = split(raw)
if f[F.state] ~= '"queued"' or f[F.lease] ~= 'd' then return 0 end
f[F.lease] = ''
redis.call('SET', KEYS[1], join(f))
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
