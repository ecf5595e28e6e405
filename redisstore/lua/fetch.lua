-- fetch.lua returns what a stream missed: the stored messages after its
-- cursor (their publications counted the stream as a recipient), and the
-- channel's gen, so the stream takes
-- the notifications after that gen. Arguments: cursor score, the gen the
-- stream registered at. Returns {nf} (the channel is gone, or was made
-- again since the stream registered: deleted, or lost by Redis),
-- {displaced} (a `last` subscriber displaced it, a notification its
-- instance missed), or {ok, gen} followed by the id and stored message of
-- each message. A stream that goes on renews its instance's interest (a
-- replica promoted before it had the registration may lack it).
-- Arguments (continued): instance.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
if tonumber(M.sw or '0') > tonumber(ARGV[8]) then -- the stream counts were wiped since it registered
  if redis.call('HGET', m, 'sx') == M.sw then return {'displaced'} end
  return {'nf'}
end
local out = {'ok', M.gen}
for _, v in ipairs(bodied(redis.call('ZRANGEBYSCORE', q, '(' .. ARGV[7], '+inf'))) do
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
end
-- Not counted as delivered: every message after the stream's cursor was
-- published while the stream was counted in s, and its publication
-- counted the stream among its recipients (though its notification was
-- missed); counting them again would remove messages received once.
local written = {}
interest(ARGV[9], written)
settl(written)
return out
