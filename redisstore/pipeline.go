package redisstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// This file holds the pipeline that sends publish scripts. A publication
// goes to Redis at once while fewer than maxInFlight calls are there; one
// that comes while they are waits, and the publications that wait go
// together when one of those in Redis answers: as one script call that
// runs each channel's publications one after another (publish.lua's
// groups), up to maxGroups a call, the calls of a bigger batch in one
// pipeline. One write and one read for all, in Caddy and in redis-server,
// and one script's setup in Redis, instead of a round trip and a setup
// each; each call's publications are still published as if alone and
// answered alone, so a quiet store's latency is unchanged and a busy one's
// grows by at most one call.
//
// The coalescer (coalesce.go) already makes the publications of one
// channel one call; this is for many channels, whose calls are
// independent, so their order within a batch does not matter (it is the
// order they came). Long-poll registrations are not sent this way: they
// are coalesced per channel, and a fan-out's registrations would wait
// behind its publications. Only a single node's client (or a Sentinel's)
// batches: a Cluster's or a Ring's channels live on different nodes, and a
// call goes to the node of its first key.

// maxInFlight is how many publish calls (or batches) are in Redis at once
// before the next wait to go together. One alone keeps a busy store's
// publishers waiting on each other's round trips (the rate fell in the
// bench); 4 took 0.84-0.93x the CPU per publication on 1000 channels at
// 0.99-1.09x the rate (bench/results/2026-11-28-redis.md).
const maxInFlight = 4

// maxBatch bounds a batch.
const maxBatch = 64

// maxGroups bounds the calls one script runs: a script holds Redis, every
// other client's commands wait, until its last group is done.
const maxGroups = 16

// pcall is one publish call waiting for its turn.
type pcall struct {
	keys    []string
	argv    []any
	answers int // how many values its answer has

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
	scripts atomic.Uint64 // script calls those batches took (tests read it)
}

// callPiped runs a publish call, whose answer has answers values, through
// the pipeline and returns its answer.
func (s *Store) callPiped(ctx context.Context, keys []string, argv []any, answers int) (any, error) {
	if !s.batches { // a Cluster (or Ring) routes a call by its first key, and go-redis would retry a batch's calls (once.go)
		return scriptPublish.Run(ctx, s.client, keys, argv...).Result()
	}
	p := &s.pipe
	p.mu.Lock()
	if p.inFlight < maxInFlight {
		p.inFlight++
		p.mu.Unlock()
		v, err := scriptPublish.Run(ctx, s.client, keys, argv...).Result()
		s.handOff()
		return v, err
	}
	c := &pcall{keys: keys, argv: argv, answers: answers, turn: make(chan []*pcall, 1)}
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
// calls, maxGroups to a script call, the script calls as one pipeline,
// answers them and hands the turn off. A script call that Redis does not
// have (NOSCRIPT: Redis restarted or its scripts were flushed) is sent
// again alone, with the script's text.
func (s *Store) sendBatch(batch []*pcall) {
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	var groups [][]*pcall
	for rest := batch; len(rest) > 0; {
		n := min(len(rest), maxGroups)
		groups, rest = append(groups, rest[:n]), rest[n:]
	}
	if len(batch) > 1 {
		s.pipe.batched.Add(uint64(len(batch)))
		s.pipe.scripts.Add(uint64(len(groups)))
	}
	calls := make([]scriptCall, len(groups))
	for i, g := range groups {
		calls[i] = merged(g)
	}
	if len(calls) == 1 {
		c := calls[0]
		v, err := c.sc.Run(ctx, s.client, c.keys, c.argv...).Result()
		answerEach(groups[0], v, err)
	} else {
		pipe := s.client.Pipeline()
		cmds := make([]*redis.Cmd, len(calls))
		for i, c := range calls {
			cmds[i] = c.sc.EvalSha(ctx, pipe, c.keys, c.argv...)
		}
		_, _ = pipe.Exec(ctx) // each command's error is its calls'
		for i, c := range calls {
			v, err := cmds[i].Result()
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				v, err = c.sc.Run(ctx, s.client, c.keys, c.argv...).Result()
			}
			answerEach(groups[i], v, err)
		}
	}
	for _, c := range batch[1:] {
		c.turn <- nil
	}
	s.handOff()
}

// scriptCall is one script call: a script, its keys and its arguments.
type scriptCall struct {
	sc   *redis.Script
	keys []string
	argv []any
}

// merged is the script call that runs the calls of g in order: the
// prelude's arguments once, then each call's own (publish.lua's groups,
// scriptPublishMany's for more than one).
func merged(g []*pcall) scriptCall {
	if len(g) == 1 {
		return scriptCall{scriptPublish, g[0].keys, g[0].argv}
	}
	var nk, na int
	for _, c := range g {
		nk, na = nk+len(c.keys), na+len(c.argv)-preludeArgs
	}
	keys, argv := make([]string, 0, nk), make([]any, 0, preludeArgs+na)
	argv = append(argv, g[0].argv[:preludeArgs]...)
	for _, c := range g {
		keys, argv = append(keys, c.keys...), append(argv, c.argv[preludeArgs:]...)
	}
	return scriptCall{scriptPublishMany, keys, argv}
}

// answerEach gives each call of g its part of the script call's answer,
// the error its own group answered ("err" and Redis's message), or the
// script call's error.
func answerEach(g []*pcall, v any, err error) {
	if err == nil {
		all, _ := v.([]any)
		want := 0
		for _, c := range g {
			want += c.answers
		}
		if len(all) != want {
			err = fmt.Errorf("redis store: publish answered %d values for %d calls, want %d", len(all), len(g), want)
		} else {
			for _, c := range g {
				part := all[:c.answers:c.answers]
				all = all[c.answers:]
				if len(part) > 1 && part[0] == "err" {
					c.err = groupError(str(part[1]))
				} else {
					c.v = part
				}
			}
			return
		}
	}
	for _, c := range g {
		c.err = err
	}
}

// groupError is the error one group of a merged publish script answered:
// Redis's own, as a call of its own would have got it (so Store.fail
// tells a refusal from an outage the same way).
type groupError string

func (e groupError) Error() string { return string(e) }

// RedisError marks it as Redis's answer (redis.Error).
func (groupError) RedisError() {}

var _ redis.Error = groupError("")
