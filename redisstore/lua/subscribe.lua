-- subscribe.lua. Arguments: create (0/1), cursor score or "newest",
-- wait (0/1), concurrency (0 broadcast, 1 first, 2 last), max waiters,
-- instance, notes channel, key header, key cost. Returns {nf} or {kind,
-- expired, displaced} followed by kind's values: conflict, toomany, none,
-- msg (id, payload) or wait (gen, cursor, channel timeout). displaced is
-- the gen of a `last` displacement, or 0; its notification is
-- "x<gen> <key header>".
-- (Its arguments count from ARGV[6]; ARGV[1..5] are the prelude's.)
if not live() then
  if ARGV[6] == '0' then return {'nf'} end
  create(ARGV[14])
end
redis.call('HSET', m, 'rq', fmt(now), 'lu', fmt(now))
M.rq, M.lu = fmt(now), fmt(now)
local cur = ARGV[7]
if cur == 'newest' then
  local last = redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')
  if #last == 2 then cur = last[2] else cur = '-1' end
end
local found = redis.call('ZRANGEBYSCORE', q, '(' .. cur, '+inf', 'LIMIT', 0, 1)
local n = waiting()
local displaced = '0'
if n > 0 then
  if ARGV[9] == '1' then settl({}) return {'conflict', expired, displaced} end
  if ARGV[9] == '2' then
    displaced = fmt(redis.call('HINCRBY', m, 'gen', 1))
    M.gen = displaced
    redis.call('DEL', w)
    redis.call('PUBLISH', ARGV[12], 'x' .. displaced .. ' ' .. ARGV[13])
    n = 0
  end
  local max = tonumber(ARGV[10])
  if max > 0 and n >= max then settl({}) return {'toomany', expired, displaced} end
end
if #found == 1 then
  local id = found[1]
  local payload = redis.call('HGET', d, id)
  delivered(id, 1)
  settl({})
  return {'msg', expired, displaced, id, payload}
end
if ARGV[8] == '0' then settl({}) return {'none', expired, displaced} end
if redis.call('HINCRBY', w, ARGV[11], 1) == 1 then settl({w}) else settl({}) end
return {'wait', expired, displaced, M.gen, cur, M.ct}
