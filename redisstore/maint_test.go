package redisstore

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// TestLoadsScripts checks that the store loads its scripts into Redis when
// its notes subscription is confirmed, before any request, and again
// after Redis restarts with an empty script cache: otherwise the first
// calls, and the rechecks of every parked subscription after an outage,
// each miss with NOSCRIPT and send the whole script again.
func TestLoadsScripts(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	startOn(t, srv, "scripts:") // it loads the scripts
	var shas []string
	for _, sc := range scripts {
		shas = append(shas, sc.Hash())
	}
	loaded := func() bool {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
		defer c.Close()
		exist, err := c.ScriptExists(context.Background(), shas...).Result()
		return err == nil && !slices.Contains(exist, false)
	}
	waitFor(t, "the scripts to be loaded before any request", loaded)
	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the scripts to be loaded again after the restart", loaded)
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLapsedStreamCountRestored: an instance's stream count that lapsed
// (no keepalive reached Redis for streamTTL: Redis out of reach for a
// minute while the streams stayed open) is set again by its next
// keepalive from the streams it counts, so a `first` subscriber is
// refused again. Before, the keepalive refreshed only a live count, and
// the open stream stayed uncounted.
func TestLapsedStreamCountRestored(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "lapse:")
	b := startOn(t, srv, "lapse:")
	skew := shareClock(a, b)
	if _, err := a.Touch("c", time.Hour); err != nil {
		t.Fatal(err)
	}
	sub, err := a.Follow([]string{"c"}, pushstore.FollowRequest{QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	skew.Store(int64(streamTTL + time.Second)) // no keepalive reached Redis meanwhile
	if info, _ := a.Info("c"); info.Subscribers != 0 {
		t.Fatalf("the count did not lapse: %d subscribers", info.Subscribers)
	}
	a.mu.Lock()
	a.local["c"].kept = time.Now().Add(-time.Hour) // its keepalive is due
	a.mu.Unlock()
	if n := a.Sweep(); n != 1 {
		t.Fatalf("%d keepalives sent, want 1", n)
	}
	if info, _ := a.Info("c"); info.Subscribers != 1 {
		t.Fatalf("after the keepalive: %d subscribers, want a's open stream", info.Subscribers)
	}
	if _, err := b.Follow([]string{"c"}, pushstore.FollowRequest{QueueBytes: 1 << 20, Concurrency: pushstore.First}); err != pushstore.ErrConflict {
		t.Fatalf("a `first` subscriber while a's stream is open: %v, want ErrConflict", err)
	}
}

// TestDeadInstancesLongPollsLapse: an instance that dies (killed: nothing
// uncounts its parked long-polls) leaves them counted for at most
// streamTTL, as its streams, not until the channel's next event: another
// instance's `first` subscriber is admitted once they lapse. A live
// instance's keepalive keeps its parked long-polls counted.
func TestDeadInstancesLongPollsLapse(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "deadpoll:")
	b := startOn(t, srv, "deadpoll:")
	skew := shareClock(a, b)
	first := pushstore.SubscribeRequest{Create: true, Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}}
	res, err := a.Subscribe("c", first)
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	defer res.Sub.Cancel()
	if _, err := b.Subscribe("c", first); err != pushstore.ErrConflict {
		t.Fatalf("a `first` subscriber while a's long-poll waits: %v, want ErrConflict", err)
	}
	skew.Store(int64(streamTTL + time.Second)) // no keepalive of a's reached Redis: a died
	if info, _ := b.Info("c"); info.Subscribers != 0 {
		t.Fatalf("a minute after a's last word, c counts %d subscribers, want 0", info.Subscribers)
	}
	r, err := b.Subscribe("c", pushstore.SubscribeRequest{Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}})
	if err != nil {
		t.Fatalf("a `first` subscriber a minute after a's last word: %v, want it admitted", err)
	}
	if r.Sub != nil {
		r.Sub.Cancel()
	}
	a.mu.Lock()
	a.local["c"].kept = time.Now().Add(-time.Hour) // a lives: its keepalive is due
	a.mu.Unlock()
	if n := a.Sweep(); n != 1 {
		t.Fatalf("%d keepalives sent, want 1", n)
	}
	if _, err := b.Subscribe("c", first); err != pushstore.ErrConflict {
		t.Fatalf("a `first` subscriber after a's keepalive: %v, want ErrConflict", err)
	}
}

// TestKeepaliveTakesOffPollsNobodyWaits: a parked long-poll count of this
// instance's where none of its long-polls waits (a registration answered
// too late to wait: the request had failed) is not kept alive by the
// keepalives of the instance's streams on the channel: it lapses a minute
// after it was made. A count without its time (written before counts had
// one) is taken off by the keepalive, since it would never lapse.
func TestKeepaliveTakesOffPollsNobodyWaits(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "ghost:")
	var skew atomic.Int64
	a.SetClockSkew(func() time.Duration { return time.Duration(skew.Load()) })
	sub, err := a.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	w := a.Keys("c")[5]
	keepalive := func() {
		t.Helper()
		a.mu.Lock()
		a.local["c"].kept = time.Now().Add(-time.Hour)
		a.mu.Unlock()
		if n := a.Sweep(); n != 1 {
			t.Fatalf("%d keepalives sent, want 1", n)
		}
	}
	subscribers := func(want int, when string) {
		t.Helper()
		if info, _ := a.Info("c"); info.Subscribers != want {
			t.Fatalf("%s: %d subscribers, want %d", when, info.Subscribers, want)
		}
	}
	// The late registration's count, with its time (countPolls').
	res, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, w, a.instance, 1, a.instance+":t", res.UnixMilli()).Err(); err != nil {
		t.Fatal(err)
	}
	subscribers(2, "the stream and the late registration's count")
	keepalive()
	subscribers(2, "after a keepalive, within the minute")
	skew.Store(int64(streamTTL/2 + time.Second))
	keepalive() // the stream's count is refreshed, the long-poll count is not
	skew.Store(int64(streamTTL + time.Second))
	subscribers(1, "a minute after the late registration, the stream's keepalives notwithstanding")

	// A count without its time.
	if err := rdb.HDel(ctx, w, a.instance+":t").Err(); err != nil {
		t.Fatal(err)
	}
	subscribers(2, "a count without its time")
	keepalive()
	subscribers(1, "after the keepalive, a count without its time")
}

// shareClock moves the scripts' clock of every store by one skew, which
// the test sets.
func shareClock(stores ...*Store) *atomic.Int64 {
	var skew atomic.Int64
	for _, s := range stores {
		s.SetClockSkew(func() time.Duration { return time.Duration(skew.Load()) })
	}
	return &skew
}
