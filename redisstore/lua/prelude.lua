-- The prelude of every script of the Redis store (see scripts.go): the
-- channel's keys, Redis's clock, the constants the Go side passes, and the
-- helpers the scripts share. ARGV[1] is the clock skew (ms, 0 outside
-- tests); ARGV[2..6] are constants; each script's own arguments start at
-- ARGV[7].
local m, q, d, e, x, w, z, s, ir = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local t = redis.call('TIME')
local us = t[1] * 1000000 + t[2] -- Redis's clock, µs
local SKEW = ARGV[1] + 0
local now = math.floor(us / 1000) + SKEW
local NOW = string.format('%d', now)
local TAGS = ARGV[2] + 0                -- tags per second (tagsPerSecond)
local MSG_OVERHEAD = ARGV[3] + 0        -- pushstore.MessageOverhead
local CHANNEL_TIMEOUT = ARGV[4]         -- pushstore.DefaultChannelTimeout, ms
local MIN_BUFFER = ARGV[5]              -- pushstore.DefaultMinBuffer
local STREAM_TTL = ARGV[6] + 0          -- how long a stream count lasts unrefreshed, ms (streamTTL)
-- A stored message is "<publication time, 16 digits of µs>\n<payload>";
-- its bytes, as the budget counts them, leave out that prefix and the
-- payload's two separators.
local STORED_EXTRA = 19
-- Numbers come from Redis as strings (arguments, replies, hash fields);
-- those that are always numbers are read with `+ 0`, one conversion, where
-- Lua 5.1's tonumber makes two (it checks, then converts). Numbers go to
-- Redis as strings made here (fmt, NOW): a number passed to redis.call is
-- formatted by Redis as a double, which costs more.
local function fmt(n) return string.format('%d', n) end

-- M caches the meta hash's fields for this call; writes update both.
local M = {}
local function load()
  local v = redis.call('HMGET', m, 'gen', 'lt', 'lg', 'lu', 'rq', 'ct', 'mb', 'xa', 'sw', 'by')
  M = {gen = v[1], lt = v[2], lg = v[3], lu = v[4], rq = v[5], ct = v[6], mb = v[7], xa = v[8], sw = v[9], by = v[10] or '0'}
  return v[1] ~= false
end

-- dropIds drops the stored messages ids (at most 256, within unpack's
-- reach) from the four keys that hold them and takes their bytes, as the
-- budget counts them, off the meta hash's by.
local function dropIds(ids)
  if #ids == 0 then return end
  local by = 0
  for _, id in ipairs(ids) do
    local len = redis.call('HSTRLEN', d, id)
    if len > 0 then by = by + len - STORED_EXTRA + MSG_OVERHEAD end
  end
  redis.call('ZREM', q, unpack(ids))
  redis.call('ZREM', e, unpack(ids))
  redis.call('HDEL', d, unpack(ids))
  redis.call('HDEL', x, unpack(ids))
  if by > 0 then
    redis.call('HINCRBY', m, 'by', -by)
    M.by = fmt(M.by - by)
  end
end

local function drop(id) dropIds({id}) end

-- A stored message's body may be gone while its id stays: Redis evicts
-- single keys under a maxmemory policy other than noeviction, and every
-- key of a channel has an expiry (volatile-* policies take any of them).
-- Such an id is dropped, never answered as an empty message.

-- bodied returns the stored messages of ids, {id, stored} each, in order,
-- and drops the ids whose body is gone.
local function bodied(ids)
  local out, gone = {}, {}
  for _, id in ipairs(ids) do
    local v = redis.call('HGET', d, id)
    if v then out[#out + 1] = {id, v} else gone[#gone + 1] = id end
  end
  for i = 1, #gone, 256 do dropIds({unpack(gone, i, math.min(i + 255, #gone))}) end
  return out
end

-- firstAfter returns the first stored message after score cur whose body
-- is there (its id and stored form), or nil when there is none (a
-- waiting subscriber settles past every id after cur: seenCursor); it
-- drops the ids before it whose body is gone, 64 at a time.
local function firstAfter(cur)
  local n = 1 -- the first is there, but for evictions
  while true do
    local found = redis.call('ZRANGEBYSCORE', q, '(' .. cur, '+inf', 'LIMIT', 0, n)
    n = 64
    if #found == 0 then return nil end
    local gone = {}
    for _, id in ipairs(found) do
      local v = redis.call('HGET', d, id)
      if v then
        dropIds(gone)
        return id, v
      end
      gone[#gone + 1] = id
    end
    dropIds(gone)
  end
end

-- dropOldest drops the k oldest stored messages, 256 at a time.
local function dropOldest(k)
  while k > 0 do
    local ids = redis.call('ZRANGE', q, 0, math.min(k, 256) - 1)
    if #ids == 0 then return end
    dropIds(ids)
    k = k - #ids
  end
end

-- prune drops the expired messages, 256 at a time, and returns how many.
local function prune()
  local n = 0
  repeat
    local ids = redis.call('ZRANGEBYSCORE', e, '-inf', NOW, 'LIMIT', 0, 256)
    dropIds(ids)
    n = n + #ids
  until #ids < 256
  return n
end

-- streamsOf reads one instance's stream count in s, "<count> <refreshed
-- ms>": 0 once it has gone unrefreshed for STREAM_TTL (its instance died).
local function streamsOf(v)
  if not v then return 0 end
  local c, at = string.match(v, '^(%d+) (%d+)$')
  if not c or now - at >= STREAM_TTL then return 0 end
  return c + 0
end

-- The parked long-polls' counts w (P{K}:w): instance -> how many of its
-- long-polls wait for the channel's next event, and instance..':t' -> when
-- that instance last said they wait (ms): when it first counted one since
-- the last event (countPolls), and at its keepalives. An instance that died
-- (killed: nothing uncounted them) stops counting after STREAM_TTL, as its
-- streams do, rather than until the channel's next event; a field without
-- its time (written before it had one) counts.

-- countPolls counts k parked long-polls of inst; it appends w to written
-- when it made inst's field (w may be new).
local function countPolls(inst, k, written)
  if redis.call('HINCRBY', w, inst, k) == k then
    redis.call('HSET', w, inst .. ':t', NOW)
    written[#written + 1] = w
    return
  end
  local at = redis.call('HGET', w, inst .. ':t')
  if at and now - at >= STREAM_TTL then
    -- A lapsed count (counts leaves it out) counts again, this
    -- registration's long-polls with it: it may hold long-polls of the
    -- instance that still wait (Redis was out of its reach for a minute),
    -- or one nobody is (a registration answered too late), which then
    -- counts until the channel's next event or a minute after the
    -- instance's last long-poll there leaves. Counting too many refuses a
    -- `first` subscriber; too few would admit a second.
    redis.call('HSET', w, inst .. ':t', NOW)
  end
end

-- uncountPolls takes n off inst's parked long-polls.
local function uncountPolls(inst, n)
  local v = tonumber(redis.call('HGET', w, inst) or '0') - n
  if v <= 0 then redis.call('HDEL', w, inst, inst .. ':t') else redis.call('HSET', w, inst, fmt(v)) end
end

-- counts counts the subscribers of every instance: parked long-polls (w)
-- and open streams (s); and reports whether w holds fields (lapsed ones
-- included).
local function counts()
  local wn, sn = 0, 0
  local all = redis.call('HGETALL', w)
  if #all > 0 then
    local at = {}
    for i = 1, #all, 2 do
      local f = all[i]
      if string.byte(f, -2) == 58 then at[string.sub(f, 1, -3)] = all[i + 1] + 0 end -- "<inst>:t"
    end
    for i = 1, #all, 2 do
      local f, when = all[i], at[all[i]]
      if string.byte(f, -2) ~= 58 and (not when or now - when < STREAM_TTL) then
        wn = wn + all[i + 1]
      end
    end
  end
  for _, v in ipairs(redis.call('HVALS', s)) do sn = sn + streamsOf(v) end
  return wn, sn, #all > 0
end

-- waiting counts the subscribers of every instance.
local function waiting()
  local wn, sn = counts()
  return wn + sn
end

-- streamCount adds delta to an instance's stream count and marks it
-- refreshed now.
local function streamCount(inst, delta)
  local c = math.max(streamsOf(redis.call('HGET', s, inst)) + delta, 0)
  if c == 0 then redis.call('HDEL', s, inst) else redis.call('HSET', s, inst, fmt(c) .. ' ' .. fmt(now)) end
end

-- The interest register ir (P{K}:i): instance -> until when (ms) it may have
-- subscribers on the channel. A publication is notified only while some
-- instance's interest lasts. Every script that registers or keeps a
-- subscriber (subscribe, follow, recheck, fetch, keepalive) sets its
-- instance's for the longer of channel_timeout and STREAM_TTL; the
-- instance keeps each channel it has subscribers on at least every third
-- of channel_timeout (of STREAM_TTL with streams), so its interest never
-- lapses under them. Nothing else removes it (a count is no register:
-- counts drift, and a leaving subscriber cannot know whether another of
-- its instance registered meanwhile); it lapses, and goes with the
-- channel's keys. It is never shortened: a script answered late may tell
-- the instance a longer channel_timeout than the latest, and the instance
-- keeps the channel by it. interest appends ir to written when it made
-- the instance's field (the key may be new: settl gives it the keys'
-- expiry), and returns the value it found (false when none).
local function interest(inst, written)
  local had = redis.call('HGET', ir, inst)
  local til = now + math.max(M.ct + 0, STREAM_TTL)
  if not had or til > had + 0 then
    if redis.call('HSET', ir, inst, fmt(til)) == 1 then written[#written + 1] = ir end
  end
  return had
end

-- interested reports whether some instance's interest lasts.
local function interested()
  for _, v in ipairs(redis.call('HVALS', ir)) do
    if v + 0 > now then return true end
  end
  return false
end

-- channelKeys are the channel's keys but the tombstone z (a function: a
-- merged publish script rebinds the keys for each channel).
local function channelKeys() return {m, q, d, e, x, w, s, ir} end

-- remove deletes a loaded channel's keys. A deletion (gen given) leaves
-- its gen and last id in the tombstone z for a minute; a channel that
-- timed out leaves one only if its last id is of this second (or later:
-- a clock gone back), when a new channel's ids could repeat it.
local function remove(gen)
  local v = gen
  if not v and M.lt and tonumber(M.lt) >= math.floor(now / 1000) then v = M.gen end
  redis.call('DEL', unpack(channelKeys()))
  if v then
    if M.lt then v = v .. ' ' .. M.lt .. ' ' .. M.lg end
    redis.call('SET', z, v, 'PX', 60000)
  end
  M = {}
end

-- live loads the channel, removes its expired messages and reports whether
-- it exists; an idle channel past its channel_timeout is removed here.
local expired = 0
local function live()
  if not load() then return false end
  expired = prune()
  if now >= M.lu + M.ct and redis.call('ZCARD', q) == 0 and waiting() == 0 then
    remove()
    return false
  end
  return true
end

-- create makes a channel, continuing the gen and last id of a removed one
-- under the same key (the tombstone z).
local function create(keycost)
  local gen, lt, lg = now * 1000, false, false
  local tomb = redis.call('GET', z)
  if tomb then
    local tg, tt, tl = string.match(tomb, '^(%d+) ?(%d*) ?(%d*)$')
    if tonumber(tg) >= gen then gen = tonumber(tg) + 1 end
    if tt ~= '' then lt, lg = tt, tl end
  end
  redis.call('HSET', m, 'gen', fmt(gen), 'lu', fmt(now), 'ct', CHANNEL_TIMEOUT, 'mb', MIN_BUFFER, 'by', keycost,
    'sw', fmt(gen))
  if lt then redis.call('HSET', m, 'lt', lt, 'lg', lg) end
  M = {gen = fmt(gen), lt = lt, lg = lg, lu = fmt(now), rq = false, ct = CHANNEL_TIMEOUT, mb = MIN_BUFFER, xa = false, sw = fmt(gen),
    by = keycost}
end

local function requested()
  if not M.rq then return -1 end
  return math.floor((now - M.rq) / 1000)
end

-- settl keeps the keys' own expiry at or after the channel's: the later of
-- last use + channel_timeout and the last message expiry, or none while a
-- message never expires. It is set with slack (a quarter of the timeout,
-- at least two seconds) and kept in xa, so most calls only give the keys
-- they may have created (written; e when it holds no more ids than the
-- eadded this call added to it) the expiry already set; it is set again
-- once less than half the slack is left beyond the channel's own time, so
-- a channel kept alive by regular use (keepalives) always has at least
-- half the slack ahead of it. nq is the stored message count when the
-- caller knows it; settl returns it.
--
-- A publication that stored only messages with an expiry, the latest of
-- them newmax, under the channel_timeout of the channel's last settl,
-- passes newmax, and settl reads neither e's count nor its latest expiry:
-- while xa is a time, every stored message has an expiry (one without
-- makes xa p, and only publications store messages, each followed by a
-- settl), so e counts nq; and every expiry stored before this call is at
-- most xa - slack/2 (the last settl left it so, with the same slack), so
-- when newmax or the channel's own time passes that, it is the latest,
-- and when neither does, nothing is set again.
local function settl(written, nq, eadded, newmax)
  local ct = M.ct + 0
  local at = M.lu + ct
  nq = nq or redis.call('ZCARD', q)
  local ne = nq
  if newmax and M.xa and M.xa ~= 'p' then
    if newmax > at then at = newmax end
  else
    ne = redis.call('ZCARD', e)
    if nq > ne then
      if M.xa ~= 'p' then
        for _, k in ipairs(channelKeys()) do redis.call('PERSIST', k) end
        redis.call('HSET', m, 'xa', 'p')
        M.xa = 'p'
      end
      return nq
    end
    if ne > 0 then
      local last = redis.call('ZRANGE', e, '-1', '-1', 'WITHSCORES')
      local le = last[2] + 0
      if le > at then at = le end
    end
  end
  at = at - SKEW -- Redis expires on its own clock
  local slack = math.max(2000, math.floor(ct / 4))
  if not M.xa or M.xa == 'p' or at > M.xa - slack / 2 then
    local xa = fmt(at + slack)
    redis.call('HSET', m, 'xa', xa)
    M.xa = xa
    for _, k in ipairs(channelKeys()) do redis.call('PEXPIREAT', k, xa) end
    return nq
  end
  if eadded and eadded > 0 and ne <= eadded then redis.call('PEXPIREAT', e, M.xa) end
  for _, k in ipairs(written) do redis.call('PEXPIREAT', k, M.xa) end
  return nq
end

-- A channel that a subscriber made (its meta's sc) and no publisher has
-- published to or PUT lasts SUBSCRIBED_IDLE_TTL ms once nobody waits on it,
-- not its channel_timeout: requests that cost nothing (long-polls on fresh
-- ids) would otherwise hold Redis's memory, and the budget, for an hour,
-- where the memory store drops such idle channels when it needs room.
local SUBSCRIBED_IDLE_TTL = 60000

-- shortLived gives a loaded channel that expiry if it is such a channel
-- and nobody waits on it, and reports whether it did (settl is then not
-- needed). A subscriber registering again sets the long expiry (settl).
local function shortLived()
  if M.lt or waiting() > 0 or redis.call('ZCARD', q) > 0 or redis.call('HGET', m, 'sc') ~= '1' then
    return false
  end
  local xa = fmt(now - SKEW + SUBSCRIBED_IDLE_TTL)
  redis.call('HSET', m, 'xa', xa)
  M.xa = xa
  for _, k in ipairs(channelKeys()) do redis.call('PEXPIREAT', k, xa) end
  return true
end

-- delivered counts n recipients of a stored message for its recipient
-- rule, if it has one, and reports whether the rule removed it.
local function delivered(id, n)
  local rule = redis.call('HGET', x, id)
  if not rule then return false end
  local minrec, delold, got = string.match(rule, '^(%d+) (%d) (%d+)$')
  minrec, got = tonumber(minrec), tonumber(got) + n
  redis.call('HSET', x, id, fmt(minrec) .. ' ' .. delold .. ' ' .. fmt(got))
  local cnt = redis.call('ZCARD', q)
  local mb = tonumber(M.mb)
  if cnt <= mb then return false end
  local i = redis.call('ZRANK', q, id)
  if not i then return false end
  if (minrec > 0 and got >= minrec and i < cnt - mb) or (delold == '1' and i == 0) then
    drop(id)
    return true
  end
  return false
end

local function info(expired)
  local v = redis.call('HMGET', m, 'by', 'op')
  return {'ok', expired, redis.call('ZCARD', q), requested(), waiting(), v[1] or '0', v[2] or ''}
end

-- resolve turns a subscriber's cursor argument into the sorted-set score
-- its next message follows: "newest" (the newest stored message's, so it
-- waits for the next publication), "at:<i>" (ZRANGE's index of the stored
-- message it starts at; past the newest: the newest; before the oldest:
-- the oldest), or a score, as it is.
local function resolve(cur)
  if cur == 'newest' then
    local last = redis.call('ZRANGE', q, '-1', '-1', 'WITHSCORES')
    if #last == 2 then return last[2] end
    return '-1'
  end
  local at = string.match(cur, '^at:(%-?%d+)$')
  if not at then return cur end
  local n = redis.call('ZCARD', q)
  if n == 0 then return '-1' end
  local i = math.max(math.min(tonumber(at), n - 1), -n)
  local e = redis.call('ZRANGE', q, i, i, 'WITHSCORES')
  return fmt(tonumber(e[2]) - 1)
end

-- seenCursor is the cursor a subscriber that waits from cur (resolve's)
-- settles at: the channel's last id, when it is later. Every stored
-- message after cur was answered, and what was published without being
-- stored came before the subscriber: a notification of it that arrives
-- after the registration is not newer than the subscriber's cursor.
local function seenCursor(cur)
  if not M.lt then return cur end
  local last = M.lt * TAGS + M.lg
  if last > tonumber(cur) then return fmt(last) end
  return cur
end

-- displace ends the wait of every subscriber of every instance (`last`
-- concurrency): a new gen, no waiter or stream counted any more (sw marks
-- the gen that wiped the stream counts), and a notification
-- "x<gen> <key header>" on the notes channel.
local function displace(notes, keyheader)
  local g = fmt(redis.call('HINCRBY', m, 'gen', 1))
  redis.call('DEL', w, s)
  redis.call('HSET', m, 'sw', g, 'sx', g) -- sx: the gen of the last displacement
  M.gen, M.sw = g, g
  redis.call('PUBLISH', notes, 'x' .. g .. ' ' .. keyheader)
  return g
end

-- The subscriber scripts (subscribe.lua, follow.lua) share their first
-- arguments: ARGV[7] create (0/1), ARGV[8] cursor (see resolve), ARGV[9]
-- their own, ARGV[10] concurrency (0 broadcast, 1 first, 2 last), ARGV[11]
-- max subscribers, ARGV[12] instance, ARGV[13] notes channel, ARGV[14] key
-- header, ARGV[15] key cost.

-- enter opens the channel for a subscriber: made when it is missing and
-- may be, and marked requested. Returns the resolved cursor, or false when
-- the channel is missing and may not be made.
local function enter()
  if not live() then
    if ARGV[7] == '0' then return false end
    create(ARGV[15])
    redis.call('HSET', m, 'sc', '1') -- a subscriber made it (shortLived)
  end
  redis.call('HSET', m, 'rq', fmt(now), 'lu', fmt(now))
  M.rq, M.lu = fmt(now), fmt(now)
  return resolve(ARGV[8])
end

-- admit applies the subscriber's concurrency and max subscribers. Returns
-- the refusal ('conflict' or 'toomany', with the call settled) or false,
-- and the gen of a `last` displacement ('0' when none).
local function admit()
  if ARGV[10] == '0' and ARGV[11] == '0' then return false, '0' end
  local n = waiting()
  local displaced = '0'
  if n > 0 then
    if ARGV[10] == '1' then settl({}) return 'conflict', displaced end
    if ARGV[10] == '2' then
      displaced = displace(ARGV[13], ARGV[14])
      n = 0
    end
    local max = tonumber(ARGV[11])
    if max > 0 and n >= max then settl({}) return 'toomany', displaced end
  end
  return false, displaced
end
