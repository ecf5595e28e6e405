-- cancel.lua uncounts subscribers that left. Arguments: instance, gen,
-- count, kind (w: parked long-polls, s: streams). Returns {ok}, or
-- {stale} when they were uncounted already: long-polls by any newer gen
-- (every event ends their waits), streams by a displacement or deletion
-- since the gen they registered at (sw).
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not load() then return {'stale'} end
if ARGV[10] == 's' then
  if tonumber(M.sw or '0') > tonumber(ARGV[8]) then return {'stale'} end
  streamCount(ARGV[7], -tonumber(ARGV[9]))
else
  if M.gen ~= ARGV[8] then return {'stale'} end
  uncountPolls(ARGV[7], tonumber(ARGV[9]))
end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
if not shortLived() then settl({}) end
return {'ok'}
