-- publish.lua. Arguments: store (0/1), max buffer, min buffer, min
-- recipients, delete oldest (0/1), message timeout ms, channel timeout ms,
-- payload, options, notes channel, key header ("len key"), key cost, floor
-- ("time:tag" the new id must follow, or ""). Returns id, gen, waiters,
-- stored messages, requested, expired. The message is stored, and its
-- notification "m<gen> <id> <key header><stored>" carries it, as
-- "<publication time, µs, 16 digits>\n<payload>".
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then create(ARGV[18]) end
local lt = tonumber(M.lt or '-1')
local lg = tonumber(M.lg or '0')
local tm, tag = math.floor(now / 1000), 0
if lt >= tm then tm, tag = lt, lg + 1 end
local ft, fg = string.match(ARGV[19], '^(%d+):(%d+)$')
if ft then
  ft, fg = tonumber(ft), tonumber(fg)
  if ft > tm or (ft == tm and fg >= tag) then tm, tag = ft, fg + 1 end
end
if tag >= TAGS then tm, tag = tm + 1, 0 end
local id = fmt(tm) .. ':' .. fmt(tag)
local n = waiting()
redis.call('DEL', w)
local gen = tonumber(M.gen) + 1
redis.call('HSET', m, 'lt', fmt(tm), 'lg', fmt(tag), 'lu', fmt(now), 'ct', ARGV[13], 'mb', ARGV[9], 'op', ARGV[15],
  'gen', fmt(gen))
M.lu, M.ct, M.mb, M.gen = fmt(now), ARGV[13], ARGV[9], fmt(gen)
local value = string.format('%016d', tonumber(t[1]) * 1000000 + tonumber(t[2])) .. '\n' .. ARGV[14]
local stored, ewritten, nq = false, false, nil
local written = {}
if ARGV[7] == '1' then
  redis.call('ZADD', q, fmt(tm * TAGS + tag), id)
  redis.call('HSET', d, id, value)
  local mt = tonumber(ARGV[12])
  if mt > 0 then
    redis.call('ZADD', e, fmt(now + mt), id)
    ewritten = true
  end
  if ARGV[10] ~= '0' or ARGV[11] == '1' then
    redis.call('HSET', x, id, ARGV[10] .. ' ' .. ARGV[11] .. ' 0')
    written[#written + 1] = x
  end
  redis.call('HINCRBY', m, 'by', string.len(ARGV[14]) - 2 + MSG_OVERHEAD)
  nq = redis.call('ZCARD', q)
  local over = nq - tonumber(ARGV[8])
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', q, 0, over - 1)) do drop(old) end
    nq = nq - over
  end
  if nq == 1 then -- q and d may be new
    written[#written + 1] = q
    written[#written + 1] = d
  end
  stored = true
end
redis.call('PUBLISH', ARGV[16], 'm' .. fmt(gen) .. ' ' .. id .. ' ' .. ARGV[17] .. value)
if n > 0 and stored then
  delivered(id, n)
  nq = nil -- a recipient rule may have dropped a message
end
nq = settl(written, nq, ewritten)
return {id, fmt(gen), n, nq, requested(), expired}
