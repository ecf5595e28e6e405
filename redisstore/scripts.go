package redisstore

import (
	"embed"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file loads the Lua scripts of the Redis store (lua/*.lua). Each runs
// atomically on the Redis node that holds the channel, so the protocol's
// state machine (ids, buffers, expiry, recipient rules, subscriber counts)
// has one truth shared by every Caddy instance.
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
// Every script is lua/prelude.lua followed by its own file. ARGV[1] is the
// clock skew (ms, 0 outside tests: every script works on Redis's clock, so
// instances need no synchronized clocks), ARGV[2..5] are the constants the
// Go side owns (scriptConstants), and a script's own arguments follow.
// Every script returns a list whose first element says what happened;
// Store.run reads every answer as one (TestScriptReplies).
//
// gen grows by one with every event that ends waits (publish, delete,
// `last` displacement); a notification with gen G ends the waits parked
// at gen G-1, and one with a higher gen shows a waiter it missed an event.
// Expiry is the keys' own: an idle channel's keys expire at max(last used
// + channel_timeout, last message expiry), plus slack (see settl); scripts
// treat a channel past its time as gone already.

// tagsPerSecond bounds the tag of an id, so that time*tagsPerSecond+tag is
// an exact sorted-set score; a channel's 2^20th message in one second takes
// the next second.
const tagsPerSecond = 1 << 20

//go:embed lua/*.lua
var luaFiles embed.FS

func script(name string) *redis.Script {
	prelude, err := luaFiles.ReadFile("lua/prelude.lua")
	if err != nil {
		panic(err)
	}
	body, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(prelude) + "\n" + string(body))
}

// The scripts; each file's header says its arguments and answers.
var (
	scriptPublish   = script("publish")
	scriptSubscribe = script("subscribe")
	scriptRecheck   = script("recheck")
	scriptCancel    = script("cancel")
	scriptKeepalive = script("keepalive")
	scriptTouch     = script("touch")
	scriptInfo      = script("info")
	scriptDelete    = script("delete")
)

// scripts are all the scripts, for loading them ahead of their first use
// (see Store.loadScripts).
var scripts = []*redis.Script{scriptPublish, scriptSubscribe, scriptRecheck, scriptCancel,
	scriptKeepalive, scriptTouch, scriptInfo, scriptDelete}

// scriptConstants are ARGV[2..5] of every script, in the prelude's order.
var scriptConstants = []any{tagsPerSecond, pushstore.MessageOverhead,
	pushstore.DefaultChannelTimeout.Milliseconds(), pushstore.DefaultMinBuffer}

// cursorScore is the sorted-set score after which a subscriber's next
// message lies.
func cursorScore(req pushstore.SubscribeRequest) string {
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
