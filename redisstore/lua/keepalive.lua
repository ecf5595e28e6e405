-- keepalive.lua marks a channel with subscribers here used, so its keys
-- do not expire under them, and sets this instance's stream count to the
-- streams it counts here (streams of an instance that stops refreshing
-- them stop counting after STREAM_TTL; a count that lapsed while Redis was
-- out of reach is restored). A count a `last` displacement wiped after the
-- earliest of those streams registered (sw newer than its gen) is only
-- refreshed: they are being displaced. A stream registered or cancelled
-- while this call was on its way is counted right by the next keepalive.
-- Arguments: instance, streams counted here, the least gen they
-- registered at, the least gen any subscriber counted here (stream or
-- parked long-poll) registered at (-1: none), the long-polls waiting here
-- (parked or being registered). The parked long-polls' count is marked
-- alive again (see countPolls) while one waits here, else left to lapse (a
-- count left by a registration answered too late to wait: Redis stalled
-- past read_timeout). Returns {ok, channel
-- timeout}; {nf} when the channel is gone; {wiped, sw} when the counts
-- were wiped at gen sw, after some of those subscribers registered: the
-- channel was made again (Redis lost its data) or a `last` subscriber
-- displaced them; or {lost, channel timeout} when the instance's interest
-- was gone (a replica promoted before it had it). It renews the
-- instance's interest for the channel timeout it returns (at least
-- STREAM_TTL), which the instance keeps the channel by, every third of it:
-- a publication may have changed it since the instance learned it. A
-- publication is notified only while some instance's interest lasts, so on
-- nf, wiped and lost the instance looks those subscribers up again
-- (recheck, catch-up) instead of waiting for a notification that may not
-- come.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
local n = tonumber(ARGV[8])
local written = {}
if n > 0 and tonumber(M.sw or '0') <= tonumber(ARGV[9]) then
  redis.call('HSET', s, ARGV[7], fmt(n) .. ' ' .. fmt(now))
  written = {s} -- s may be new
else
  local c = streamsOf(redis.call('HGET', s, ARGV[7]))
  if c > 0 then redis.call('HSET', s, ARGV[7], fmt(c) .. ' ' .. fmt(now)) end
end
-- The long-poll count is never set here, only renewed or left to lapse: a
-- cancel or registration on its way would make a set one wrong for as
-- long as nothing sets it again.
if redis.call('HEXISTS', w, ARGV[7]) == 1 then
  if ARGV[11] ~= '0' then
    redis.call('HSET', w, ARGV[7] .. ':t', NOW)
  elseif redis.call('HEXISTS', w, ARGV[7] .. ':t') == 0 then
    redis.call('HDEL', w, ARGV[7]) -- a count without its time never lapses
  end
  -- Else it is left to lapse (counts): a long-poll that registered after
  -- the instance read its count of them (none) for this call has its
  -- count there, and the next keepalive marks it alive.
end
local had = interest(ARGV[7], written)
local all = redis.call('HGETALL', ir)
for k = 1, #all, 2 do -- lapsed interest (instances gone)
  if tonumber(all[k + 1]) <= now then redis.call('HDEL', ir, all[k]) end
end
settl(written)
local least = tonumber(ARGV[10])
if least >= 0 and tonumber(M.sw or '0') > least then return {'wiped', M.sw} end
if not had or tonumber(had) <= now then return {'lost', M.ct} end
return {'ok', M.ct}
