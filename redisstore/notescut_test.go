package redisstore

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddypush/caddy-push/internal/redistest"
)

// TestNotesCutIsNotAnOutage: Redis closes the store's pub/sub connection
// alone (CLIENT KILL TYPE pubsub, as its client-output-buffer-limit does
// for a slow reader) while it answers every command. That is logged as the
// notifications' interruption, not as "redis unavailable; answering 503
// until it returns": publications were answered as usual.
func TestNotesCutIsNotAnOutage(t *testing.T) {
	srv := redistest.Start(t)
	core, logs := observer.New(zap.InfoLevel)
	s := NewFromClient(redis.NewClient(&redis.Options{Addr: srv.Addr()}), "cut:", 0, zap.New(core))
	s.Start()
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, "the notes subscription", s.subscribed.Load)
	epoch := s.epoch.Load()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	if err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the subscription made again", func() bool { return s.epoch.Load() > epoch })
	if n := logs.FilterMessageSnippet("redis unavailable").Len(); n != 0 {
		t.Errorf("a cut pub/sub connection was logged as Redis unavailable (%d lines)", n)
	}
	if n := logs.FilterMessageSnippet("notifications interrupted").Len(); n != 1 {
		t.Errorf("the notifications' interruption was logged %d times, want once", n)
	}
}
