package redisstore

import (
	"embed"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file loads the Lua scripts of the Redis store (lua/*.lua). Each runs
// atomically on the Redis node that holds the channel, so the protocol's
// state machine (ids, buffers, expiry, recipient rules, subscriber counts)
// has one truth shared by every Caddy instance.
//
// A channel K under prefix P lives in nine keys with the hash tag {K}, so
// that they share a Cluster slot:
//
//	P{K}:m  hash: lt, lg (last id), gen, lu (last used, ms), rq (last
//	        requested, ms), ct (channel_timeout, ms), mb (min buffer), by
//	        (bytes), op (last publish options), xa (the keys' expiry, ms,
//	        or p: persistent)
//	P{K}:q  sorted set: stored message ids "time:tag", scored time*2^20+tag
//	P{K}:d  hash: id -> "<publication time, µs, 16 digits>\n<payload>", the
//	        payload being content type "\n" event "\n" body
//	P{K}:e  sorted set: id -> expiry (ms), for messages with a timeout
//	P{K}:x  hash: id -> "min_recipients delete_oldest received", for
//	        messages a recipient rule applies to
//	P{K}:w  hash: instance -> long-polls parked there since gen last changed
//	P{K}:s  hash: instance -> "<streams open there> <refreshed, ms>"
//	P{K}:z  string: "gen lt lg" (gen and last id) of a removed channel,
//	        for a minute: a channel made again under its key continues
//	        both, so neither gens nor ids go backwards
//	P{K}:i  hash: instance -> until when (ms) it may have subscribers
//	        here (its interest): a publication is notified only while
//	        one lasts
//
// Every script is lua/prelude.lua followed by its own file (the publish
// scripts by publish.lua in two forms, below). ARGV[1] is the
// clock skew (ms, 0 outside tests: every script works on Redis's clock, so
// instances need no synchronized clocks), ARGV[2..6] are the constants the
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

// luaFile returns one of the lua files.
func luaFile(name string) string {
	b, err := luaFiles.ReadFile("lua/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return string(b)
}

// script is the prelude, then the named file.
func script(name string) *redis.Script { return scriptOf(luaFile(name)) }

// scriptOf is the prelude, then the given parts.
func scriptOf(parts ...string) *redis.Script {
	return redis.NewScript(luaFile("prelude") + "\n" + strings.Join(parts, "\n"))
}

// The scripts; each file's header says its arguments and answers. The
// publish scripts run publish.lua's group: once, inline, for one channel's
// call, and as a function under pcall for each of several channels' calls
// (publish_many.lua), so that one group's failure is that group's alone.
var (
	scriptPublish     = scriptOf("local out, seq, b, k = {}, 0, 6, 0", luaFile("publish"), "return out")
	scriptPublishMany = scriptOf("local out, seq = {}, 0", "local function group(b, k)", luaFile("publish"), "end",
		luaFile("publish_many"))
	scriptSubscribe = script("subscribe")
	scriptRecheck   = script("recheck")
	scriptCancel    = script("cancel")
	scriptKeepalive = script("keepalive")
	scriptTouch     = script("touch")
	scriptInfo      = script("info")
	scriptDelete    = script("delete")
	scriptFollow    = script("follow")
	scriptFetch     = script("fetch")
	scriptReceived  = script("received")
)

// scripts are all the scripts, for loading them ahead of their first use
// (see Store.loadScripts).
var scripts = []*redis.Script{scriptPublish, scriptPublishMany, scriptSubscribe, scriptRecheck, scriptCancel,
	scriptKeepalive, scriptTouch, scriptInfo, scriptDelete, scriptFollow, scriptFetch, scriptReceived}

// streamTTL is how long an instance's stream count in Redis lasts without
// a keepalive: the streams of an instance that died without releasing
// them stop counting after it. Keepalives come at a third of it.
const streamTTL = 60 * time.Second

// scriptConstants are ARGV[2..6] of every script, in the prelude's order.
var scriptConstants = []any{tagsPerSecond, pushstore.MessageOverhead,
	pushstore.DefaultChannelTimeout.Milliseconds(), pushstore.DefaultMinBuffer, streamTTL.Milliseconds()}

// cursorScore is what the scripts take as a subscriber's cursor: the
// sorted-set score after which its next message lies, or for one without a
// cursor "newest" (the next publication) or "at:<index>" (ZRANGE's index of
// the stored message it starts at, negative from the newest: first_message
// numbers).
func cursorScore(hasCursor bool, cursor pushstore.MessageID, from pushstore.Start) string {
	if !hasCursor {
		switch {
		case from.Newest:
			return "newest"
		case from.At > 1:
			return "at:" + strconv.Itoa(from.At-1)
		case from.At < 0:
			return "at:" + strconv.Itoa(from.At)
		}
		return "-1"
	}
	t, tag := cursor.Time, cursor.Tag
	switch {
	case t < 0:
		return "-1"
	case t > 1<<32:
		t, tag = 1<<32, tagsPerSecond-1
	}
	tag = min(max(tag, 0), tagsPerSecond-1)
	return strconv.FormatInt(t*tagsPerSecond+tag, 10)
}
