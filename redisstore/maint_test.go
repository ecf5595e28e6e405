package redisstore

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
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
