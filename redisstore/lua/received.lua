-- received.lua counts one message of a channel as delivered, with its
-- recipient rules: the message a multiplexed long-poll or interval-poll
-- was answered with from a channel's backlog, once it is known to be the
-- one sent (several channels may have one). Arguments: id. Returns {ok},
-- or {nf}.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
delivered(ARGV[7], 1)
settl({})
return {'ok'}
