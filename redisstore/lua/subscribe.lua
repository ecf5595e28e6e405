-- subscribe.lua. Arguments: create (0/1), cursor (see resolve),
-- wait (0/1), concurrency (0 broadcast, 1 first, 2 last), max waiters,
-- instance, notes channel, key header, key cost. Returns {nf} or {kind,
-- expired, displaced} followed by kind's values: conflict, toomany, none,
-- msg (id, payload) or wait (gen, cursor, channel timeout). displaced is
-- the gen of a `last` displacement, or 0; its notification is
-- "x<gen> <key header>".
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then
  if ARGV[7] == '0' then return {'nf'} end
  create(ARGV[15])
end
redis.call('HSET', m, 'rq', fmt(now), 'lu', fmt(now))
M.rq, M.lu = fmt(now), fmt(now)
local cur = resolve(ARGV[8])
local found = redis.call('ZRANGEBYSCORE', q, '(' .. cur, '+inf', 'LIMIT', 0, 1)
local n = waiting()
local displaced = '0'
if n > 0 then
  if ARGV[10] == '1' then settl({}) return {'conflict', expired, displaced} end
  if ARGV[10] == '2' then
    displaced = displace(ARGV[13], ARGV[14])
    n = 0
  end
  local max = tonumber(ARGV[11])
  if max > 0 and n >= max then settl({}) return {'toomany', expired, displaced} end
end
if #found == 1 then
  local id = found[1]
  local payload = redis.call('HGET', d, id)
  delivered(id, 1)
  settl({})
  return {'msg', expired, displaced, id, payload}
end
if ARGV[9] == '0' then settl({}) return {'none', expired, displaced} end
if redis.call('HINCRBY', w, ARGV[12], 1) == 1 then settl({w}) else settl({}) end
return {'wait', expired, displaced, M.gen, cur, M.ct}
