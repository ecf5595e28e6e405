-- follow.lua registers a subscriber that follows the channel (Follow): a
-- stream, counted in s until it leaves; a one-shot subscriber (a
-- multiplexed long-poll), counted in w as a parked long-poll when it has
-- nothing to be sent now; or an interval-poll, not registered. Arguments:
-- create (0/1), cursor (see resolve), mode (s stream, t stream whose
-- backlog received.lua counts once its later channels took it too, o
-- one-shot, n interval-poll), concurrency (0 broadcast, 1 first, 2 last), max
-- subscribers, instance, notes channel, key header, key cost. Returns
-- {nf}, {conflict, expired}, {toomany, expired}, or {ok, expired, gen,
-- cursor, channel timeout} followed by the id and stored message of each
-- stored message after the cursor (the first only, but for a stream). A
-- stream's are counted as delivered (by received.lua for mode t); a
-- one-shot's first is counted by received.lua once it is the one sent.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
local cur = enter()
if not cur then return {'nf'} end
local mode = ARGV[9]
local stream = mode == 's' or mode == 't'
local refused = admit()
if refused then return {refused, expired} end
local ids = {}
if stream then
  ids = bodied(redis.call('ZRANGEBYSCORE', q, '(' .. cur, '+inf'))
else
  local id, v = firstAfter(cur)
  if id then ids[1] = {id, v} end
end
local out = {'ok', expired, M.gen, seenCursor(cur), M.ct}
for _, v in ipairs(ids) do
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
end
if mode == 's' then
  for _, v in ipairs(ids) do delivered(v[1], 1) end
end
local written = {}
if stream then
  streamCount(ARGV[12], 1)
  written = {s}
  interest(ARGV[12], written)
elseif mode == 'o' and #ids == 0 then
  countPolls(ARGV[12], 1, written)
  interest(ARGV[12], written)
end
if mode == 'n' and shortLived() then return out end
settl(written)
return out
