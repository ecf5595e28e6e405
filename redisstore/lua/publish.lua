-- publish.lua: the publications of one channel's call, run as one group
-- of a publish script (scripts.go): alone (scriptPublish) or as one of
-- several channels' calls that went to Redis together (pipeline.go,
-- scriptPublishMany), one after another, each as it would run alone. Its
-- keys are KEYS[k+1..k+9] and its arguments ARGV[b+1..]
-- (ARGV[1..6] are the prelude's):
--
--	n (the payloads), store (0/1), max buffer, min buffer, min recipients,
--	delete oldest (0/1), message timeout ms, channel timeout ms, options,
--	notes channel, key header ("len key"), key cost, floor ("time:tag" the
--	first new id must follow, or ""), then the n payloads
--
-- (several publishers of one channel and settings coalesced), published in
-- order, each as if alone. It appends to out requested and expired, then
-- for each publication its id, gen, waiters and stored messages. Each
-- publication is stored, and its notification "m<gen> <id> <key
-- header><stored>" carries it, as "<publication time, µs, 16
-- digits>\n<payload>" (the publications of one script take successive µs,
-- counted by seq). A publication is notified only while some instance's
-- interest lasts (see interest): one that no instance may wait for wakes
-- none of them.
m, q, d, e, x, w, z, s, ir = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6], KEYS[k + 7],
  KEYS[k + 8], KEYS[k + 9]
expired = 0
local np, store, maxbuf, minbuf, minrec, delold, mt, ct, opts, notes, keyheader, keycost, floor = ARGV[b + 1] + 0,
  ARGV[b + 2] == '1', ARGV[b + 3] + 0, ARGV[b + 4], ARGV[b + 5], ARGV[b + 6], ARGV[b + 7] + 0, ARGV[b + 8],
  ARGV[b + 9], ARGV[b + 10], ARGV[b + 11], ARGV[b + 12], ARGV[b + 13]
if not live() then create(keycost) end
local written, eadded = {}, 0
local o = #out
out[o + 1], out[o + 2] = 0, 0
local ft, fg = string.match(floor, '^(%d+):(%d+)$')
-- What the publications of this call share is read once and written once
-- (the meta hash's fields, the bytes): nothing else runs in between. The
-- first publication ends the long-polls' waits; the streams stay.
-- A channel without subscribers' keys (w, s, ir) has none to count or
-- notify.
local wn, sn, heard, polls = 0, 0, false, false
if redis.call('EXISTS', w, s, ir) > 0 then
  wn, sn, polls = counts()
  heard = interested()
end
local nq = redis.call('ZCARD', q)
local added = 0
local sameCt = M.ct == ct -- settl may take the publication's latest expiry (newmax)
M.lu, M.ct, M.mb = NOW, ct, minbuf -- the recipient rules read mb
local rule = false
if minrec ~= '0' or delold == '1' then rule = minrec .. ' ' .. delold .. ' 0' end
local expiry = mt > 0 and fmt(now + mt)
local lt, lg, gen = (M.lt or -1) + 0, (M.lg or 0) + 0, M.gen + 0
local sec = math.floor(now / 1000)
-- Messages a publication pushes out of the buffer are dropped after the
-- last publication, together (the oldest first, as one by one), unless
-- the call's messages have a recipient rule, which counts the buffer as
-- each is delivered.
local over = 0
for i = 1, np do
  local payload = ARGV[b + 13 + i]
  local tm, tag = sec, 0
  if lt >= tm then tm, tag = lt, lg + 1 end
  if ft then
    ft, fg = tonumber(ft), tonumber(fg)
    if ft > tm or (ft == tm and fg >= tag) then tm, tag = ft, fg + 1 end
    ft = nil
  end
  if tag >= TAGS then tm, tag = tm + 1, 0 end
  lt, lg, gen = tm, tag, gen + 1
  local id = string.format('%d:%d', tm, tag)
  local g = fmt(gen)
  local n = wn + sn
  if polls then
    redis.call('DEL', w)
    wn, polls = 0, false
  end
  local value = string.format('%016d\n', us + seq) .. payload
  seq = seq + 1
  if store then
    redis.call('ZADD', q, fmt(tm * TAGS + tag), id)
    redis.call('HSET', d, id, value)
    if expiry then
      redis.call('ZADD', e, expiry, id)
      eadded = eadded + 1
    end
    if rule then
      redis.call('HSET', x, id, rule)
      if not written[x] then written[x], written[#written + 1] = true, x end
    end
    added = added + string.len(payload) - 2 + MSG_OVERHEAD
    nq = nq + 1
    if nq > maxbuf then
      if rule then dropOldest(nq - maxbuf) else over = over + nq - maxbuf end
      nq = maxbuf
    end
    if nq == 1 and not written[q] then -- q and d may be new
      written[q], written[#written + 1], written[#written + 2] = true, q, d
    end
  end
  if heard then redis.call('PUBLISH', notes, 'm' .. g .. ' ' .. id .. ' ' .. keyheader .. value) end
  if n > 0 and rule and store and delivered(id, n) then
    nq = nq - 1 -- its recipient rule dropped a message
  end
  out[#out + 1] = id
  out[#out + 1] = g
  out[#out + 1] = n
  out[#out + 1] = nq
end
dropOldest(over)
M.lt, M.lg, M.gen = fmt(lt), fmt(lg), fmt(gen)
if added > 0 then M.by = fmt(M.by + added) end
redis.call('HSET', m, 'lt', M.lt, 'lg', M.lg, 'lu', M.lu, 'ct', M.ct, 'mb', M.mb, 'op', opts, 'gen', M.gen, 'by', M.by)
settl(written, nq, eadded, store and expiry and sameCt and now + mt or nil)
out[o + 1], out[o + 2] = requested(), expired
