-- fetch.lua returns what a stream missed: the stored messages after its
-- cursor, counted as delivered, and the channel's gen, so the stream takes
-- the notifications after that gen. Arguments: cursor score. Returns {nf}
-- (the channel is gone), or {ok, gen} followed by the id and stored
-- message of each message.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then return {'nf'} end
local ids = redis.call('ZRANGEBYSCORE', q, '(' .. ARGV[7], '+inf')
local out = {'ok', M.gen}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', d, id)
end
for _, id in ipairs(ids) do delivered(id, 1) end
settl({})
return out
