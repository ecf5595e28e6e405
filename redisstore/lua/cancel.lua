-- cancel.lua uncounts a waiter that left. Arguments: instance, gen,
-- count. Returns {ok}, or {stale}: waits already ended by a newer gen were
-- uncounted by it.
-- (Its arguments count from ARGV[6]; ARGV[1..5] are the prelude's.)
if not load() or M.gen ~= ARGV[7] then return {'stale'} end
local v = tonumber(redis.call('HGET', w, ARGV[6]) or '0') - tonumber(ARGV[8])
if v <= 0 then redis.call('HDEL', w, ARGV[6]) else redis.call('HSET', w, ARGV[6], fmt(v)) end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
settl({})
return {'ok'}
