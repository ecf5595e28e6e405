-- keepalive.lua marks a channel with subscribers here used, so its keys
-- do not expire under them, and refreshes this instance's stream count
-- (streams of an instance that stops refreshing them stop counting after
-- STREAM_TTL). Arguments: instance. Returns {ok}, or {nf}.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
local c = streamsOf(redis.call('HGET', s, ARGV[7]))
if c > 0 then redis.call('HSET', s, ARGV[7], fmt(c) .. ' ' .. fmt(now)) end
settl({})
return {'ok'}
