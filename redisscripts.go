package caddypush

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// This file holds the Lua scripts of the Redis store. Each runs atomically
// on the Redis node that holds the channel, so the protocol's state machine
// (ids, buffers, expiry, recipient rules, waiter counts) has one truth
// shared by every Caddy instance.
//
// A channel K under prefix P lives in seven keys with the hash tag {K}, so
// that they share a Cluster slot:
//
//	P{K}:m  hash: lt, lg (last id), gen, lu (last used, ms), rq (last
//	        requested, ms), ct (channel_timeout, ms), mb (min buffer), by
//	        (bytes), op (last publish options), xa (the keys' expiry, ms,
//	        or p: persistent)
//	P{K}:q  sorted set: stored message ids "time:tag", scored time*2^20+tag
//	P{K}:d  hash: id -> content type "\n" body
//	P{K}:e  sorted set: id -> expiry (ms), for messages with a timeout
//	P{K}:x  hash: id -> "min_recipients delete_oldest received", for
//	        messages a recipient rule applies to
//	P{K}:w  hash: instance -> waiters parked there since gen last changed
//	P{K}:z  string: "gen lt lg" (gen and last id) of a removed channel,
//	        for a minute: a channel made again under its key continues
//	        both, so neither gens nor ids go backwards
//
// Every script returns a list (RESP array) whose first element says what
// happened; RedisStore.run reads every answer as one, so a script that
// returned a bare number would fail every call (TestRedisScriptReplies).
//
// gen grows with every event that ends waits (publish, delete, `last`
// displacement); a notification with gen G ends the waits parked at a gen
// below G. Every script takes the clock skew (ms, 0 outside tests) as
// ARGV[1] and works on Redis's clock, so instances need no synchronized
// clocks. Expiry is the keys' own: an idle channel's keys expire at
// max(last used + channel_timeout, last message expiry), plus slack (see
// settl); scripts treat a channel past its time as gone already.

// tagsPerSecond bounds the tag of an id, so that time*tagsPerSecond+tag is
// an exact sorted-set score; a channel's 2^20th message in one second takes
// the next second.
const tagsPerSecond = 1 << 20

const luaPrelude = `
local m, q, d, e, x, w, z = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local TAGS = ` + "1048576" + `
local MSG_OVERHEAD = ` + "128" + `
local function fmt(n) return string.format('%d', n) end

-- M caches the meta hash's fields for this call; writes update both.
local M = {}
local function load()
  local v = redis.call('HMGET', m, 'gen', 'lt', 'lg', 'lu', 'rq', 'ct', 'mb', 'xa')
  M = {gen = v[1], lt = v[2], lg = v[3], lu = v[4], rq = v[5], ct = v[6], mb = v[7], xa = v[8]}
  return v[1] ~= false
end

local function drop(id)
  local body = redis.call('HGET', d, id)
  redis.call('ZREM', q, id)
  redis.call('ZREM', e, id)
  redis.call('HDEL', d, id)
  redis.call('HDEL', x, id)
  if body then redis.call('HINCRBY', m, 'by', -(string.len(body) - 1 + MSG_OVERHEAD)) end
end

local function prune()
  local ids = redis.call('ZRANGEBYSCORE', e, '-inf', now)
  for _, id in ipairs(ids) do drop(id) end
  return #ids
end

local function waiting()
  local n = 0
  for _, v in ipairs(redis.call('HVALS', w)) do n = n + tonumber(v) end
  return n
end

-- remove deletes a loaded channel's keys. A deletion (gen given) leaves
-- its gen and last id in the tombstone z for a minute; a channel that
-- timed out leaves one only if its last id is of this second (or later:
-- a clock gone back), when a new channel's ids could repeat it.
local function remove(gen)
  local v = gen
  if not v and M.lt and tonumber(M.lt) >= math.floor(now / 1000) then v = M.gen end
  redis.call('DEL', m, q, d, e, x, w)
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
  if now >= tonumber(M.lu) + tonumber(M.ct) and redis.call('ZCARD', q) == 0 and waiting() == 0 then
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
  redis.call('HSET', m, 'gen', fmt(gen), 'lu', fmt(now), 'ct', '3600000', 'mb', '1', 'by', keycost)
  if lt then redis.call('HSET', m, 'lt', lt, 'lg', lg) end
  M = {gen = fmt(gen), lt = lt, lg = lg, lu = fmt(now), rq = false, ct = '3600000', mb = '1', xa = false}
end

local function requested()
  if not M.rq then return -1 end
  return math.floor((now - tonumber(M.rq)) / 1000)
end

-- settl keeps the keys' own expiry at or after the channel's: the later of
-- last use + channel_timeout and the last message expiry, or none while a
-- message never expires. It is set with slack (a quarter of the timeout,
-- at least two seconds) and kept in xa, so most calls only give the keys
-- they may have created (written; e when ewritten and it holds one id) the
-- expiry already set; it is set again once less than half the slack is
-- left beyond the channel's own time, so a channel kept alive by regular
-- use (keepalives) always has at least half the slack ahead of it. nq is
-- the stored message count when the caller knows it; settl returns it.
local function settl(written, nq, ewritten)
  local ct = tonumber(M.ct)
  local at = tonumber(M.lu) + ct
  nq = nq or redis.call('ZCARD', q)
  local ne = redis.call('ZCARD', e)
  if nq > ne then
    if M.xa ~= 'p' then
      for _, k in ipairs({m, q, d, e, x, w}) do redis.call('PERSIST', k) end
      redis.call('HSET', m, 'xa', 'p')
      M.xa = 'p'
    end
    return nq
  end
  if ne > 0 then
    local last = redis.call('ZRANGE', e, -1, -1, 'WITHSCORES')
    if tonumber(last[2]) > at then at = tonumber(last[2]) end
  end
  at = at - tonumber(ARGV[1]) -- Redis expires on its own clock
  local slack = math.max(2000, math.floor(ct / 4))
  if not M.xa or M.xa == 'p' or at > tonumber(M.xa) - slack / 2 then
    local xa = fmt(at + slack)
    redis.call('HSET', m, 'xa', xa)
    M.xa = xa
    for _, k in ipairs({m, q, d, e, x, w}) do redis.call('PEXPIREAT', k, xa) end
    return nq
  end
  if ewritten and ne == 1 then redis.call('PEXPIREAT', e, M.xa) end
  for _, k in ipairs(written) do redis.call('PEXPIREAT', k, M.xa) end
  return nq
end

local function delivered(id, n)
  local rule = redis.call('HGET', x, id)
  if not rule then return end
  local minrec, delold, got = string.match(rule, '^(%d+) (%d) (%d+)$')
  minrec, got = tonumber(minrec), tonumber(got) + n
  redis.call('HSET', x, id, fmt(minrec) .. ' ' .. delold .. ' ' .. fmt(got))
  local cnt = redis.call('ZCARD', q)
  local mb = tonumber(M.mb)
  if cnt <= mb then return end
  local i = redis.call('ZRANK', q, id)
  if not i then return end
  if (minrec > 0 and got >= minrec and i < cnt - mb) or (delold == '1' and i == 0) then drop(id) end
end

local function info(expired)
  local v = redis.call('HMGET', m, 'by', 'op')
  return {'ok', expired, redis.call('ZCARD', q), requested(), waiting(), v[1] or '0', v[2] or ''}
end
`

// redisPublish: ARGV skew, store (0/1), max buffer, min buffer, min
// recipients, delete oldest (0/1), message timeout ms, channel timeout ms,
// payload, options, notes channel, key header ("len key"), key cost, floor
// ("time:tag" the new id must follow, or ""). Returns id, gen, waiters,
// stored messages, requested, expired. Its notification is
// "m<gen> <id> <key header><payload>".
var redisPublish = redis.NewScript(luaPrelude + `
if not live() then create(ARGV[13]) end
local lt = tonumber(M.lt or '-1')
local lg = tonumber(M.lg or '0')
local tm, tag = math.floor(now / 1000), 0
if lt >= tm then tm, tag = lt, lg + 1 end
local ft, fg = string.match(ARGV[14], '^(%d+):(%d+)$')
if ft then
  ft, fg = tonumber(ft), tonumber(fg)
  if ft > tm or (ft == tm and fg >= tag) then tm, tag = ft, fg + 1 end
end
if tag >= TAGS then tm, tag = tm + 1, 0 end
local id = fmt(tm) .. ':' .. fmt(tag)
local n = waiting()
redis.call('DEL', w)
local gen = tonumber(M.gen) + 1
redis.call('HSET', m, 'lt', fmt(tm), 'lg', fmt(tag), 'lu', fmt(now), 'ct', ARGV[8], 'mb', ARGV[4], 'op', ARGV[10],
  'gen', fmt(gen))
M.lu, M.ct, M.mb, M.gen = fmt(now), ARGV[8], ARGV[4], fmt(gen)
local stored, ewritten, nq = false, false, nil
local written = {}
if ARGV[2] == '1' then
  redis.call('ZADD', q, fmt(tm * TAGS + tag), id)
  redis.call('HSET', d, id, ARGV[9])
  local mt = tonumber(ARGV[7])
  if mt > 0 then
    redis.call('ZADD', e, fmt(now + mt), id)
    ewritten = true
  end
  if ARGV[5] ~= '0' or ARGV[6] == '1' then
    redis.call('HSET', x, id, ARGV[5] .. ' ' .. ARGV[6] .. ' 0')
    written[#written + 1] = x
  end
  redis.call('HINCRBY', m, 'by', string.len(ARGV[9]) - 1 + MSG_OVERHEAD)
  nq = redis.call('ZCARD', q)
  local over = nq - tonumber(ARGV[3])
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
redis.call('PUBLISH', ARGV[11], 'm' .. fmt(gen) .. ' ' .. id .. ' ' .. ARGV[12] .. ARGV[9])
if n > 0 and stored then
  delivered(id, n)
  nq = nil -- a recipient rule may have dropped a message
end
nq = settl(written, nq, ewritten)
return {id, fmt(gen), n, nq, requested(), expired}
`)

// redisSubscribe: ARGV skew, create (0/1), cursor score or "newest",
// wait (0/1), concurrency (0 broadcast, 1 first, 2 last), max waiters,
// instance, notes channel, key header, key cost. Returns {nf} or {kind,
// expired, displaced} followed by kind's values: conflict, toomany, none,
// msg (id, payload) or wait (gen, cursor, channel timeout). displaced is
// the gen of a `last` displacement, or 0; its notification is
// "x<gen> <key header>".
var redisSubscribe = redis.NewScript(luaPrelude + `
if not live() then
  if ARGV[2] == '0' then return {'nf'} end
  create(ARGV[10])
end
redis.call('HSET', m, 'rq', fmt(now), 'lu', fmt(now))
M.rq, M.lu = fmt(now), fmt(now)
local cur = ARGV[3]
if cur == 'newest' then
  local last = redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')
  if #last == 2 then cur = last[2] else cur = '-1' end
end
local found = redis.call('ZRANGEBYSCORE', q, '(' .. cur, '+inf', 'LIMIT', 0, 1)
local n = waiting()
local displaced = '0'
if n > 0 then
  if ARGV[5] == '1' then settl({}) return {'conflict', expired, displaced} end
  if ARGV[5] == '2' then
    displaced = fmt(redis.call('HINCRBY', m, 'gen', 1))
    M.gen = displaced
    redis.call('DEL', w)
    redis.call('PUBLISH', ARGV[8], 'x' .. displaced .. ' ' .. ARGV[9])
    n = 0
  end
  local max = tonumber(ARGV[6])
  if max > 0 and n >= max then settl({}) return {'toomany', expired, displaced} end
end
if #found == 1 then
  local id = found[1]
  local payload = redis.call('HGET', d, id)
  delivered(id, 1)
  settl({})
  return {'msg', expired, displaced, id, payload}
end
if ARGV[4] == '0' then settl({}) return {'none', expired, displaced} end
if redis.call('HINCRBY', w, ARGV[7], 1) == 1 then settl({w}) else settl({}) end
return {'wait', expired, displaced, M.gen, cur, M.ct}
`)

// redisRecheck looks again for a parked waiter after the notifications
// may have been missed: ARGV skew, cursor score, gen, instance. Returns
// {msg, id, payload} (and uncounts the waiter), {same} when nothing
// happened since it parked, or {changed}.
var redisRecheck = redis.NewScript(luaPrelude + `
if not live() then return {'changed'} end
local found = redis.call('ZRANGEBYSCORE', q, '(' .. ARGV[2], '+inf', 'LIMIT', 0, 1)
local same = M.gen == ARGV[3]
if #found == 1 then
  local id = found[1]
  local payload = redis.call('HGET', d, id)
  delivered(id, 1)
  if same then
    local v = tonumber(redis.call('HGET', w, ARGV[4]) or '0')
    if v <= 1 then redis.call('HDEL', w, ARGV[4]) else redis.call('HINCRBY', w, ARGV[4], -1) end
  end
  settl({})
  return {'msg', id, payload}
end
if same then return {'same'} end
return {'changed'}
`)

// redisCancel uncounts a waiter that left: ARGV skew, instance, gen,
// count. Returns {ok}, or {stale}: waits already ended by a newer gen were
// uncounted by it.
var redisCancel = redis.NewScript(luaPrelude + `
if not load() or M.gen ~= ARGV[3] then return {'stale'} end
local v = tonumber(redis.call('HGET', w, ARGV[2]) or '0') - tonumber(ARGV[4])
if v <= 0 then redis.call('HDEL', w, ARGV[2]) else redis.call('HSET', w, ARGV[2], fmt(v)) end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
settl({})
return {'ok'}
`)

// redisKeepalive marks a channel with parked waiters used, so its keys do
// not expire under them: ARGV skew. Returns {ok}, or {nf}.
var redisKeepalive = redis.NewScript(luaPrelude + `
if not live() then return {'nf'} end
redis.call('HSET', m, 'lu', fmt(now))
M.lu = fmt(now)
settl({})
return {'ok'}
`)

// redisTouch creates a channel if needed and sets its channel_timeout
// (publisher PUT): ARGV skew, channel timeout ms, key cost. Returns info.
var redisTouch = redis.NewScript(luaPrelude + `
if not live() then create(ARGV[3]) end
redis.call('HSET', m, 'lu', fmt(now), 'ct', ARGV[2])
M.lu, M.ct = fmt(now), ARGV[2]
settl({})
return info(expired)
`)

// redisInfo returns a channel's info, stat and last options, or {nf}:
// ARGV skew.
var redisInfo = redis.NewScript(luaPrelude + `
if not live() then return {'nf'} end
return info(expired)
`)

// redisDelete removes a channel and ends its waits everywhere with 410:
// ARGV skew, notes channel, key header. Returns its info from before, or
// {nf}. Its notification is "d<gen> <key header>".
var redisDelete = redis.NewScript(luaPrelude + `
if not live() then return {'nf'} end
local res = info(expired)
local gen = fmt(tonumber(M.gen) + 1)
redis.call('PUBLISH', ARGV[2], 'd' .. gen .. ' ' .. ARGV[3])
remove(gen)
return res
`)

// redisScripts are all the scripts, for loading them ahead of their first
// use (see RedisStore.loadScripts).
var redisScripts = []*redis.Script{redisPublish, redisSubscribe, redisRecheck, redisCancel,
	redisKeepalive, redisTouch, redisInfo, redisDelete}

// cursorScore is the sorted-set score after which a subscriber's next
// message lies.
func cursorScore(req SubscribeRequest) string {
	if !req.HasCursor {
		if req.StartNewest {
			return "newest"
		}
		return "-1"
	}
	t, tag := req.Cursor.Time, req.Cursor.Tag
	switch {
	case t < 0:
		return "-1"
	case t > 1<<32:
		t, tag = 1<<32, tagsPerSecond-1
	}
	tag = min(max(tag, 0), tagsPerSecond-1)
	return strconv.FormatInt(t*tagsPerSecond+tag, 10)
}
