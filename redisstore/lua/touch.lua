-- touch.lua creates a channel if needed and sets its channel_timeout
-- (publisher PUT). Arguments: channel timeout ms, key cost. Returns info.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then create(ARGV[8]) end
redis.call('HSET', m, 'lu', fmt(now), 'ct', ARGV[7])
redis.call('HDEL', m, 'sc') -- a publisher's now: its channel_timeout holds
M.lu, M.ct = fmt(now), ARGV[7]
settl({})
return info(expired)
