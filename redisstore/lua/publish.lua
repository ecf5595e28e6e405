-- publish.lua. Arguments: store (0/1), max buffer, min buffer, min
-- recipients, delete oldest (0/1), message timeout ms, channel timeout ms,
-- options, notes channel, key header ("len key"), key cost, floor
-- ("time:tag" the first new id must follow, or ""), then the payloads of
-- one or more publications (several publishers of one channel and settings
-- coalesced), published in order, each as if alone. Returns requested and
-- expired, then for each publication its id, gen, waiters and stored
-- messages. Each is stored, and its notification "m<gen> <id> <key
-- header><stored>" carries it, as "<publication time, µs, 16
-- digits>\n<payload>" (the publications of one call take successive µs).
-- A publication is notified only while some instance's interest lasts
-- (see interest): one that no instance may wait for wakes none of them.
-- (Its arguments count from ARGV[7]; ARGV[1..6] are the prelude's.)
if not live() then create(ARGV[17]) end
local mt = tonumber(ARGV[12])
local maxbuf = tonumber(ARGV[8])
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local written, eadded = {}, 0
local out = {0, 0}
local ft, fg = string.match(ARGV[18], '^(%d+):(%d+)$')
-- What the publications of this call share is read once and written once
-- (the meta hash's fields, the bytes): nothing else runs in between. The
-- first publication ends the long-polls' waits; the streams stay.
local wn, wl, sn = counts()
local heard = interested()
local nq = redis.call('ZCARD', q)
local added = 0
M.lu, M.ct, M.mb = fmt(now), ARGV[13], ARGV[9] -- the recipient rules read mb
for i = 19, #ARGV do
  local payload = ARGV[i]
  local lt = tonumber(M.lt or '-1')
  local lg = tonumber(M.lg or '0')
  local tm, tag = math.floor(now / 1000), 0
  if lt >= tm then tm, tag = lt, lg + 1 end
  if ft then
    ft, fg = tonumber(ft), tonumber(fg)
    if ft > tm or (ft == tm and fg >= tag) then tm, tag = ft, fg + 1 end
    ft = nil
  end
  if tag >= TAGS then tm, tag = tm + 1, 0 end
  local id = fmt(tm) .. ':' .. fmt(tag)
  local n = wn + sn
  if wl > 0 then
    redis.call('DEL', w)
    wn, wl = 0, 0
  end
  local gen = tonumber(M.gen) + 1
  M.lt, M.lg, M.gen = fmt(tm), fmt(tag), fmt(gen)
  local value = string.format('%016d', us + i - 19) .. '\n' .. payload
  local stored = false
  if ARGV[7] == '1' then
    redis.call('ZADD', q, fmt(tm * TAGS + tag), id)
    redis.call('HSET', d, id, value)
    if mt > 0 then
      redis.call('ZADD', e, fmt(now + mt), id)
      eadded = eadded + 1
    end
    if ARGV[10] ~= '0' or ARGV[11] == '1' then
      redis.call('HSET', x, id, ARGV[10] .. ' ' .. ARGV[11] .. ' 0')
      if not written[x] then written[x], written[#written + 1] = true, x end
    end
    added = added + string.len(payload) - 2 + MSG_OVERHEAD
    nq = nq + 1
    local over = nq - maxbuf
    if over > 0 then
      for _, old in ipairs(redis.call('ZRANGE', q, 0, over - 1)) do drop(old) end
      nq = nq - over
    end
    if nq == 1 and not written[q] then -- q and d may be new
      written[q], written[#written + 1], written[#written + 2] = true, q, d
    end
    stored = true
  end
  if heard then redis.call('PUBLISH', ARGV[15], 'm' .. fmt(gen) .. ' ' .. id .. ' ' .. ARGV[16] .. value) end
  if n > 0 and stored and delivered(id, n) then
    nq = nq - 1 -- its recipient rule dropped a message
  end
  out[#out + 1] = id
  out[#out + 1] = fmt(gen)
  out[#out + 1] = n
  out[#out + 1] = nq
end
redis.call('HSET', m, 'lt', M.lt, 'lg', M.lg, 'lu', M.lu, 'ct', M.ct, 'mb', M.mb, 'op', ARGV[14], 'gen', M.gen)
if added > 0 then redis.call('HINCRBY', m, 'by', added) end
settl(written, nq, eadded)
out[1], out[2] = requested(), expired
return out
