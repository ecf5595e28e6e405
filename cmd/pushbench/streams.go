package main

// Scenarios over any subscriber transport (-transport, -server):
//
//	fanout  (eventsource, websocket) S subscribers on one channel, R rounds;
//	        each round publishes once every subscriber has the previous one
//	rate    S subscribers on one channel; publications at a fixed rate so
//	        that -rate deliveries/s are offered (publications/s = rate / S)
//	        for -duration, then a drain; any transport, long-poll included
//	idle    (eventsource, websocket) S open streams, one channel each (or
//	        one shared, -idle-shared): server memory per connection
//	probe   one subscriber, one publication: exit status 0 if it arrives
//	        (the bench scripts' health check for a server and transport)
//
// Each message's latency is measured from just before its publish request
// to its receipt; each subscriber keeps a bitmap of the sequence numbers it
// got, so loss, duplicates and order are exact.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// countdown closes done once n arrivals have been counted.
type countdown struct {
	n    int64
	c    atomic.Int64
	done chan struct{}
}

func newCountdown(n int) *countdown { return &countdown{n: int64(n), done: make(chan struct{})} }
func (c *countdown) arrive() {
	if c.c.Add(1) == c.n {
		close(c.done)
	}
}

func waitDone(ctx context.Context, ch <-chan struct{}, to time.Duration) bool {
	t := time.NewTimer(to)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// tally is what one subscriber received. Only its own goroutine writes it;
// uniq and last are read by the publisher while it runs.
type tally struct {
	uniq   atomic.Int64 // distinct sequence numbers received
	last   atomic.Int64 // the highest one
	seen   []uint64     // bitmap of sequence numbers
	dup    int64        // received again
	ooo    int64        // received after a higher one
	bad    int64        // bodies that are not pushbench's
	lat    []int64      // ns, publish -> receipt, first receipts only
	lastRx atomic.Int64 // mono() of the latest first receipt
}

// take records one body; isNew is true for a first receipt.
func (t *tally) take(body []byte, recvT int64) (seq int64, isNew bool) {
	seq, sent, ok := parseBody(body)
	if !ok || seq <= 0 || seq > 1<<30 {
		t.bad++
		return 0, false
	}
	w := int(seq >> 6)
	for w >= len(t.seen) {
		t.seen = append(t.seen, 0)
	}
	bit := uint64(1) << (seq & 63)
	if t.seen[w]&bit != 0 {
		t.dup++
		return seq, false
	}
	t.seen[w] |= bit
	if seq < t.last.Load() {
		t.ooo++
	} else {
		t.last.Store(seq)
	}
	t.lat = append(t.lat, recvT-sent)
	t.lastRx.Store(recvT)
	t.uniq.Add(1)
	return seq, true
}

// fleet is a set of subscribers, each in its own goroutine, reconnecting
// after a dropped connection at most -max-reconnects times.
type fleet struct {
	tallies    []*tally
	ready      *countdown // first ready of every subscriber
	wg         sync.WaitGroup
	cancel     context.CancelFunc
	errs       atomic.Int64
	reconnects atomic.Int64
	lastErr    atomic.Value
}

// startFleet starts n subscribers; chOf names subscriber i's channel;
// onNew (may be nil) sees every first receipt.
func startFleet(ctx context.Context, cfg *config, newSub newSubFunc, n int, chOf func(int) string, onNew func(seq int64)) *fleet {
	f := &fleet{tallies: make([]*tally, n), ready: newCountdown(n)}
	ctx, f.cancel = context.WithCancel(ctx)
	for i := range n {
		t := &tally{}
		f.tallies[i] = t
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			run := newSub(i)
			once := false
			ev := subEvents{
				ready: func() {
					if !once {
						once = true
						f.ready.arrive()
					}
				},
				msg: func(body []byte, recvT int64) {
					if seq, isNew := t.take(body, recvT); isNew && onNew != nil {
						onNew(seq)
					}
				},
			}
			for attempt := 0; ctx.Err() == nil; attempt++ {
				err := run(ctx, chOf(i), ev)
				if ctx.Err() != nil {
					return
				}
				f.errs.Add(1)
				if err != nil {
					f.lastErr.Store(err.Error())
				}
				if attempt >= cfg.maxReconnects {
					return
				}
				f.reconnects.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	return f
}

// stop ends every subscriber and waits for them.
func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// minUniq is the fewest messages any subscriber has.
func (f *fleet) minUniq() int64 {
	m := int64(1 << 62)
	for _, t := range f.tallies {
		m = min(m, t.uniq.Load())
	}
	return m
}

// summarize records the deliveries against `published` messages per
// subscriber, and returns the number delivered.
func (f *fleet) summarize(r *result, published int64) int64 {
	var delivered, dup, ooo, bad int64
	var lat []int64
	for _, t := range f.tallies {
		delivered += t.uniq.Load()
		dup += t.dup
		ooo += t.ooo
		bad += t.bad
		lat = append(lat, t.lat...)
	}
	expected := published * int64(len(f.tallies))
	r.set("delivered", delivered)
	r.set("expected", expected)
	r.set("lost", expected-delivered)
	r.set("duplicated", dup)
	r.set("out_of_order", ooo)
	r.set("bad_bodies", bad)
	r.setLatency(lat)
	f.errors(r)
	return delivered
}

func (f *fleet) errors(r *result) {
	r.set("sub_errors", f.errs.Load())
	r.set("reconnects", f.reconnects.Load())
	if e, ok := f.lastErr.Load().(string); ok {
		r.set("last_sub_error", e)
	}
}

// await waits until every subscriber is ready and, for the push protocol
// with -info, until the server's channel info counts them on ch.
func (f *fleet) await(ctx context.Context, cfg *config, c httpConn, ch string, n int, r *result) error {
	start := time.Now()
	if !waitDone(ctx, f.ready.done, cfg.waitTO) {
		f.errors(r)
		return fmt.Errorf("%d of %d subscribers connected in %v", f.ready.c.Load(), n, cfg.waitTO)
	}
	r.set("connect_s", time.Since(start).Seconds())
	if cfg.server == "push" && cfg.useInfo && ch != "" {
		conf, sup := waitServerSubs(ctx, c, chanURL(cfg.pub, ch), n, cfg.waitTO)
		r.set("info_confirmed", conf)
		if sup && !conf {
			return fmt.Errorf("channel info did not count %d subscribers", n)
		}
	}
	time.Sleep(cfg.settle)
	return nil
}

// runStreamFanout: S subscribers on one channel, R rounds, closed loop.
func runStreamFanout(ctx context.Context, cfg *config, r *result) error {
	S, R := cfg.subs, cfg.rounds
	ch := cfg.runID + "-fan"
	r.set("subs", S)
	r.set("rounds", R)
	got := make([]*countdown, R+2)
	for i := range got {
		got[i] = newCountdown(S)
	}
	f := startFleet(ctx, cfg, cfg.newSub, S, func(int) string { return ch }, func(seq int64) {
		if seq <= int64(R) {
			got[seq].arrive()
		}
	})
	defer f.stop()
	c := cfg.factory()
	defer c.close()
	if err := f.await(ctx, cfg, c, ch, S, r); err != nil {
		return err
	}
	cpu0 := sampleServer(cfg.pids, cfg.children)
	var span int64
	pubErrs, roundTimeouts := 0, 0
	for rd := 1; rd <= R && ctx.Err() == nil; rd++ {
		t := mono()
		if st, err := cfg.publish(ctx, c, ch, makeBody(int64(rd), t, cfg.msgSize)); err != nil || !publishOK(st) {
			pubErrs++
			r.set("last_publish_error", fmt.Sprint(st, " ", err))
		}
		if !waitDone(ctx, got[rd].done, cfg.waitTO) {
			roundTimeouts++
			if roundTimeouts > 3 {
				break
			}
		}
		span += mono() - t
	}
	cpu1 := sampleServer(cfg.pids, cfg.children)
	f.stop()
	delivered := f.summarize(r, int64(R))
	r.set("deliveries_per_s", float64(delivered)/(float64(span)/1e9))
	r.set("publish_errors", pubErrs)
	r.set("round_timeouts", roundTimeouts)
	r.addServer(cpu0, cpu1, delivered, "delivery")
	if pubErrs > 0 || roundTimeouts > 0 {
		return errors.New("publish errors or round timeouts")
	}
	return nil
}

// runRate: S subscribers on one channel, publications at rate/S per
// second for the duration, then up to -drain for the last deliveries.
func runRate(ctx context.Context, cfg *config, r *result) error {
	S := cfg.subs
	if cfg.rate <= 0 {
		return errors.New("-rate must be > 0")
	}
	interval := time.Duration(float64(time.Second) * float64(S) / cfg.rate)
	n := int64(cfg.duration / interval)
	if n < 1 {
		n = 1
	}
	ch := cfg.runID + "-rate"
	r.set("subs", S)
	r.set("rate", cfg.rate)
	r.set("publications", n)
	r.set("publishes_per_s_offered", float64(time.Second)/float64(interval))
	f := startFleet(ctx, cfg, cfg.newSub, S, func(int) string { return ch }, nil)
	defer f.stop()
	c := cfg.factory()
	defer c.close()
	if err := f.await(ctx, cfg, c, ch, S, r); err != nil {
		return err
	}
	cpu0 := sampleServer(cfg.pids, cfg.children)
	start := time.Now()
	t0 := mono()
	var published int64
	var maxLag time.Duration
	var pubLat []int64
	pubErrs := 0
	for i := int64(0); i < n && ctx.Err() == nil; i++ {
		at := start.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		maxLag = max(maxLag, time.Since(at))
		t := mono()
		st, err := cfg.publish(ctx, c, ch, makeBody(i+1, t, cfg.msgSize))
		pubLat = append(pubLat, mono()-t)
		if err != nil || !publishOK(st) {
			pubErrs++
			r.set("last_publish_error", fmt.Sprint(st, " ", err))
			continue
		}
		published = i + 1
	}
	pubEnd := time.Since(start)
	drainEnd := time.Now().Add(cfg.drain)
	for time.Now().Before(drainEnd) && ctx.Err() == nil && f.minUniq() < published {
		time.Sleep(5 * time.Millisecond)
	}
	cpu1 := sampleServer(cfg.pids, cfg.children)
	f.stop()
	var lastRx int64
	for _, t := range f.tallies {
		lastRx = max(lastRx, t.lastRx.Load())
	}
	delivered := f.summarize(r, n)
	r.set("published", published)
	r.set("publish_s", pubEnd.Seconds())
	r.set("publish_max_lag_ms", float64(maxLag.Microseconds())/1000)
	pp50, pp99, _ := pctMs(pubLat)
	r.set("publish_p50_ms", pp50)
	r.set("publish_p99_ms", pp99)
	r.set("publish_errors", pubErrs)
	if lastRx > t0 {
		r.set("deliveries_per_s", float64(delivered)/(float64(lastRx-t0)/1e9))
	}
	r.addServer(cpu0, cpu1, delivered, "delivery")
	if pubErrs > 0 {
		return errors.New("publish errors")
	}
	return nil
}

// runStreamIdle: S open subscriber connections held idle; the server's
// memory per connection is its RSS growth divided by S.
func runStreamIdle(ctx context.Context, cfg *config, r *result) error {
	S := cfg.subs
	r.set("subs", S)
	r.set("shared_channel", cfg.idleShared)
	chOf := func(i int) string {
		if cfg.idleShared {
			return cfg.runID + "-idle"
		}
		return fmt.Sprintf("%s-idle%d", cfg.runID, i)
	}
	c := cfg.factory()
	defer c.close()
	time.Sleep(200 * time.Millisecond)
	before := sampleServer(cfg.pids, cfg.children)
	f := startFleet(ctx, cfg, cfg.newSub, S, chOf, nil)
	defer f.stop()
	info := ""
	if !cfg.idleShared {
		info = chOf(S - 1) // the last to connect
	}
	if err := f.await(ctx, cfg, c, info, 1, r); err != nil {
		return err
	}
	select {
	case <-time.After(cfg.hold):
	case <-ctx.Done():
	}
	with := sampleServer(cfg.pids, cfg.children)
	f.stop()
	c.close()
	time.Sleep(1500 * time.Millisecond)
	closed := sampleServer(cfg.pids, cfg.children)
	f.errors(r)
	if before.ok && with.ok {
		r.set("server_rss_kb_before", before.rssKB)
		r.set("server_rss_kb_with_subs", with.rssKB)
		r.set("server_rss_kb_after_close", closed.rssKB)
		r.set("server_pss_kb_with_subs", with.pssKB)
		r.set("rss_bytes_per_sub", float64(with.rssKB-before.rssKB)*1024/float64(S))
		r.set("pss_bytes_per_sub", float64(with.pssKB-before.pssKB)*1024/float64(S))
		r.set("server_cpu_s_open_close", closed.cpuSec-before.cpuSec)
	}
	if f.errs.Load() > 0 {
		return errors.New("some subscribers failed while idle")
	}
	return nil
}

// runProbe: one subscriber, one publication, within -wait-timeout.
func runProbe(ctx context.Context, cfg *config, r *result) error {
	ch := cfg.runID + "-probe"
	f := startFleet(ctx, cfg, cfg.newSub, 1, func(int) string { return ch }, nil)
	defer f.stop()
	c := cfg.factory()
	defer c.close()
	if err := f.await(ctx, cfg, c, ch, 1, r); err != nil {
		r.set("pass", false)
		return err
	}
	st, err := cfg.publish(ctx, c, ch, makeBody(1, mono(), cfg.msgSize))
	if err != nil || !publishOK(st) {
		r.set("pass", false)
		return fmt.Errorf("publish: %d %v", st, err)
	}
	deadline := time.Now().Add(cfg.waitTO)
	for f.minUniq() < 1 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	f.stop()
	f.summarize(r, 1)
	pass := f.tallies[0].uniq.Load() == 1
	r.set("pass", pass)
	if !pass {
		return errors.New("the message did not arrive")
	}
	return nil
}
