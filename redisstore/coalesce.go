package redisstore

import (
	"sync"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file coalesces the calls that many requests make to one channel at
// once. After a publication every long-poll of a channel re-polls, with
// the same cursor, and each registration is one subscribe script; busy
// publishers of one channel each run the publish script. Redis runs
// scripts one after another, so instead, while one call of a channel (and
// cursor, or publication settings) is in Redis, the requests that come
// with the same ones gather behind it, and when it answers they are sent
// as one call: one registration that counts them all (and answers them
// all: one message, one wait, or the same refusal), or one publication of
// their messages in the order they came. A request that finds no call of
// its kind in Redis calls at once, so an idle channel's latency is
// unchanged; a busy one's grows by at most one call.
//
// Only calls whose outcome for each member is what it would be alone are
// coalesced: long-polls with broadcast concurrency and no subscriber limit
// (first and last concurrency and a limit are decided one subscriber at a
// time), and publications with the same settings, which the script
// publishes one by one.

// coalescer runs the calls of items with the same key together, one call
// per key in Redis at a time.
type coalescer[K comparable, T any] struct {
	max   int // items per call; 0: no limit
	mu    sync.Mutex
	lines map[K]*line[T]
}

// line is a key's call in Redis, and the batches waiting behind it, in
// order: one gathering items, and before it those that are full.
type line[T any] struct {
	next []*batch[T]
}

// batch is items sent by one call. Its first item's request (the leader)
// makes the call once turn is closed; the others wait for done.
type batch[T any] struct {
	items []T
	turn  chan struct{}
	done  chan struct{}
	res   []any
	err   error
}

// do runs call with item, alone or with the items of the same key that
// came while another call of the key was in Redis, and returns call's
// answer and item's index in the items it was given.
func (c *coalescer[K, T]) do(key K, item T, call func([]T) ([]any, error)) ([]any, int, error) {
	c.mu.Lock()
	if c.lines == nil {
		c.lines = make(map[K]*line[T])
	}
	l := c.lines[key]
	if l == nil {
		c.lines[key] = &line[T]{}
		c.mu.Unlock()
		res, err := call([]T{item})
		c.passOn(key)
		return res, 0, err
	}
	var b *batch[T]
	if n := len(l.next); n > 0 && (c.max == 0 || len(l.next[n-1].items) < c.max) {
		b = l.next[n-1]
	}
	lead := b == nil
	if lead {
		b = &batch[T]{turn: make(chan struct{}), done: make(chan struct{})}
		l.next = append(l.next, b)
	}
	i := len(b.items)
	b.items = append(b.items, item)
	c.mu.Unlock()
	if !lead {
		<-b.done
		return b.res, i, b.err
	}
	<-b.turn // passOn took b off the line: its items are final (the next batch gathers now)
	b.res, b.err = call(b.items)
	close(b.done)
	c.passOn(key)
	return b.res, 0, b.err
}

// passOn ends a call of key's line: the first batch behind it may call
// now, or the line is done.
func (c *coalescer[K, T]) passOn(key K) {
	c.mu.Lock()
	l := c.lines[key]
	if len(l.next) > 0 {
		b := l.next[0]
		l.next[0] = nil
		l.next = l.next[1:]
		close(b.turn)
	} else {
		delete(c.lines, key)
	}
	c.mu.Unlock()
}

// waiting returns the number of items waiting behind key's call (for
// tests), or -1 when no call of key is in Redis.
func (c *coalescer[K, T]) waiting(key K) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.lines[key]
	if l == nil {
		return -1
	}
	n := 0
	for _, b := range l.next {
		n += len(b.items)
	}
	return n
}

// pollKey names the long-polls that may share one registration.
type pollKey struct {
	key    string
	cursor string
	create bool
}

// coalescable reports whether a long-poll's registration may be shared.
func coalescable(req pushstore.SubscribeRequest) bool {
	return req.Wait && req.Concurrency == pushstore.Broadcast && req.MaxWaiters == 0
}

// registerPoll runs the subscribe script for a long-poll already
// registered here (see Store.Subscribe), with the long-polls of the same
// pollKey that came while one of theirs was in Redis; each gets the
// call's answer.
func (s *Store) registerPoll(key string, req pushstore.SubscribeRequest) ([]any, error) {
	cursor := cursorScore(req.HasCursor, req.Cursor, req.Start)
	res, _, err := s.polls.do(pollKey{key, cursor, req.Create}, struct{}{}, func(items []struct{}) ([]any, error) {
		return s.subscribeCall(key, cursor, req, len(items))
	})
	return res, err
}

// pubKey names the publications that may share one publish call: one
// channel, the same settings (encodeOptions).
//
// A call publishes at most maxPublications, so one script (which holds
// Redis while it runs) stays short whatever the publishers send.
type pubKey struct {
	key  string
	opts string
}

const maxPublications = 32
