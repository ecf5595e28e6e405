-- delete.lua removes a channel and ends its waits everywhere with 410:
-- notes channel, key header. Returns its info from before, or
-- {nf}. Its notification is "d<gen> <key header>".
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
local res = info(expired)
local gen = fmt(tonumber(M.gen) + 1)
redis.call('PUBLISH', ARGV[7], 'd' .. gen .. ' ' .. ARGV[8])
remove(gen)
return res
