-- The partition's event stream keeps at most its length cap and nothing older than ARGV[1] (a stream id); an
-- empty stream is deleted, so a store whose records all expired goes back to no keys at all.
-- KEYS: events
-- ARGV: oldest stream id to keep
redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return 1
