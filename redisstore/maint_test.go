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
	var skew atomic.Int64
	clock := func() time.Duration { return time.Duration(skew.Load()) }
	a.SetClockSkew(clock)
	b.SetClockSkew(clock)
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
