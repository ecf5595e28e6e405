package redisstore

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// This file holds the pipeline that sends publish scripts. A publication
// goes to Redis at once while fewer than maxInFlight calls are there; one
// that comes while they are waits, and the publications that wait go
// together, as one pipeline, when one of those in Redis answers: one write
// and one read for all, in Caddy and in redis-server, instead of a round
// trip each. Each is still its own script call, answered alone; only the
// round trip is shared, so a quiet store's latency is unchanged and a busy
// one's grows by at most one call.
//
// The coalescer (coalesce.go) already makes the publications of one
// channel one call; this is for many channels, whose calls are
// independent, so their order within a batch does not matter (it is the
// order they came). Long-poll registrations are not sent this way: they
// are coalesced per channel, and a fan-out's registrations would wait
// behind its publications.

// maxInFlight is how many publish calls (or batches) are in Redis at once
// before the next wait to go together. One alone keeps a busy store's
// publishers waiting on each other's round trips (the rate fell in the
// bench); 4 took 0.84-0.93x the CPU per publication on 1000 channels at
// 0.99-1.09x the rate (bench/results/2026-11-28-redis.md).
const maxInFlight = 4

// maxBatch bounds a batch.
const maxBatch = 64

// pcall is one script call waiting for its turn.
type pcall struct {
	sc   *redis.Script
	keys []string
	argv []any

	v    any
	err  error
	turn chan []*pcall // the batch it leads (itself first), or nil once answered
}

// pipeline holds the calls waiting for a turn.
type pipeline struct {
	mu       sync.Mutex
	inFlight int
	waiting  []*pcall

	batched atomic.Uint64 // calls sent in a batch of more than one (tests read it)
}

// callPiped runs a script call through the pipeline and returns its
// answer.
func (s *Store) callPiped(ctx context.Context, sc *redis.Script, keys []string, argv []any) (any, error) {
	if s.cluster { // go-redis would retry a batch's calls (once.go)
		return sc.Run(ctx, s.client, keys, argv...).Result()
	}
	p := &s.pipe
	p.mu.Lock()
	if p.inFlight < maxInFlight {
		p.inFlight++
		p.mu.Unlock()
		v, err := sc.Run(ctx, s.client, keys, argv...).Result()
		s.handOff()
		return v, err
	}
	c := &pcall{sc: sc, keys: keys, argv: argv, turn: make(chan []*pcall, 1)}
	p.waiting = append(p.waiting, c)
	p.mu.Unlock()
	if batch := <-c.turn; batch != nil {
		s.sendBatch(batch)
	}
	return c.v, c.err
}

// handOff ends a turn in Redis: the calls waiting (up to maxBatch) take it
// as one batch, led by the first of them, or the turn is given back.
func (s *Store) handOff() {
	p := &s.pipe
	p.mu.Lock()
	if len(p.waiting) == 0 {
		p.inFlight--
		p.mu.Unlock()
		return
	}
	n := min(len(p.waiting), maxBatch)
	batch := append([]*pcall(nil), p.waiting[:n]...)
	rest := copy(p.waiting, p.waiting[n:])
	clear(p.waiting[rest:])
	p.waiting = p.waiting[:rest]
	p.mu.Unlock()
	batch[0].turn <- batch
}

// sendBatch runs in the goroutine of the batch's first call: it sends the
// calls as one pipeline, answers them and hands the turn off. A call whose
// script Redis does not have (NOSCRIPT: Redis restarted or its scripts
// were flushed) is sent again alone, with the script's text.
func (s *Store) sendBatch(batch []*pcall) {
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	if len(batch) == 1 {
		c := batch[0]
		c.v, c.err = c.sc.Run(ctx, s.client, c.keys, c.argv...).Result()
	} else {
		s.pipe.batched.Add(uint64(len(batch)))
		pipe := s.client.Pipeline()
		cmds := make([]*redis.Cmd, len(batch))
		for i, c := range batch {
			cmds[i] = c.sc.EvalSha(ctx, pipe, c.keys, c.argv...)
		}
		_, _ = pipe.Exec(ctx) // each command's error is its call's
		for i, c := range batch {
			c.v, c.err = cmds[i].Result()
			if c.err != nil && redis.HasErrorPrefix(c.err, "NOSCRIPT") {
				c.v, c.err = c.sc.Run(ctx, s.client, c.keys, c.argv...).Result()
			}
		}
	}
	for _, c := range batch[1:] {
		c.turn <- nil
	}
	s.handOff()
}
