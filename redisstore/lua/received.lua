-- received.lua counts messages of a channel as delivered, with their
-- recipient rules: the message a multiplexed long-poll or interval-poll
-- was answered with from a channel's backlog, once it is known to be the
-- one sent (several channels may have one), or the backlog of a
-- multiplexed stream's channel once every later channel took the stream
-- (one may refuse it). Arguments: the ids, in the channel's order.
-- Returns {ok}, or {nf}.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
for i = 7, #ARGV do delivered(ARGV[i], 1) end
settl({})
return {'ok'}
