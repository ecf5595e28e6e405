-- keepalive.lua marks a channel with parked waiters used, so its keys do
-- not expire under them; no arguments. Returns {ok}, or {nf}.
if not live() then return {'nf'} end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
settl({})
return {'ok'}
