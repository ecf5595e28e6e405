-- touch.lua creates a channel if needed and sets its channel_timeout
-- (publisher PUT). Arguments: channel timeout ms, key cost. Returns info.
-- (Its arguments count from ARGV[6]; ARGV[1..5] are the prelude's.)
if not live() then create(ARGV[7]) end
redis.call('HSET', m, 'lu', fmt(now), 'ct', ARGV[6])
M.lu, M.ct = fmt(now), ARGV[6]
settl({})
return info(expired)
