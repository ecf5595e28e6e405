-- subscribe.lua. Arguments: create (0/1), cursor (see resolve),
-- wait (0/1), concurrency (0 broadcast, 1 first, 2 last), max waiters,
-- instance, notes channel, key header, key cost, count (the long-polls
-- this call stands for: several that arrived together with the same
-- cursor, broadcast and no max, are registered as one). Returns {nf} or {kind,
-- expired, displaced} followed by kind's values: conflict, toomany, none,
-- msg (id, payload) or wait (gen, cursor, channel timeout). displaced is
-- the gen of a `last` displacement, or 0; its notification is
-- "x<gen> <key header>".
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
local cur = enter()
if not cur then return {'nf'} end
local refused, displaced = admit()
if refused then return {refused, expired, displaced} end
local id, payload = firstAfter(cur)
if id then
  delivered(id, tonumber(ARGV[16]))
  settl({})
  return {'msg', expired, displaced, id, payload}
end
if ARGV[9] == '0' then
  if not shortLived() then settl({}) end
  return {'none', expired, displaced}
end
local k = tonumber(ARGV[16])
local written = {}
countPolls(ARGV[12], k, written)
interest(ARGV[12], written)
settl(written)
return {'wait', expired, displaced, M.gen, seenCursor(cur), M.ct}
