-- delete.lua removes a channel and ends its waits everywhere with 410:
-- notes channel, key header. Returns its info from before, or
-- {nf}. Its notification is "d<gen> <key header>".
-- (Its arguments count from ARGV[6]; ARGV[1..5] are the prelude's.)
if not live() then return {'nf'} end
local res = info(expired)
local gen = fmt(tonumber(M.gen) + 1)
redis.call('PUBLISH', ARGV[6], 'd' .. gen .. ' ' .. ARGV[7])
remove(gen)
return res
