package redisstore

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	redistest.CloseShared()
	os.Exit(code)
}

// pub are a publisher location's settings with nothing configured.
func pub() pushstore.PublishOptions {
	return pushstore.PublishOptions{StoreMessages: true, MaxBufferLength: 10, MinBufferLength: 1,
		MessageTimeout: time.Hour, ChannelTimeout: pushstore.DefaultChannelTimeout}
}

var prefixes atomic.Int64

// newStore returns a started store on the shared redis-server with a key
// prefix of its own, closed when the test ends.
func newStore(t *testing.T) *Store {
	t.Helper()
	prefix := fmt.Sprintf("t%d-%d:", time.Now().UnixNano(), prefixes.Add(1))
	return startOn(t, redistest.Shared(t), prefix)
}

// startOn returns a started store on srv with key prefix, closed when the
// test ends.
func startOn(t testing.TB, srv *redistest.Server, prefix string) *Store {
	t.Helper()
	s := NewFromClient(redis.NewClient(&redis.Options{Addr: srv.Addr()}), prefix, 0, nil)
	s.Start()
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestRedisStoreConformance runs the store contract's suite on the Redis
// store, its clock moved by a skew of Redis's.
func TestRedisStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *storetest.Harness {
		s := newStore(t)
		var skew atomic.Int64
		s.SetClockSkew(func() time.Duration { return time.Duration(skew.Load()) })
		return &storetest.Harness{Store: s, Advance: func(d time.Duration) { skew.Add(int64(d)) }, Sweep: func() {}}
	})
}

// infoFields reads a section of Redis's INFO into its fields, name to
// value ("used_cpu_user" to "1.5", "cmdstat_eval" to "calls=3,usec=...").
func infoFields(tb testing.TB, c *redis.Client, section string) map[string]string {
	tb.Helper()
	info, err := c.Info(context.Background(), section).Result()
	if err != nil {
		tb.Fatal(err)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields
}

// cmdStat reads one figure ("calls", "usec") of a command's line in INFO
// commandstats, and reports whether the command has one.
func cmdStat(fields map[string]string, command, stat string) (float64, bool) {
	for _, kv := range strings.Split(fields["cmdstat_"+command], ",") {
		if v, ok := strings.CutPrefix(kv, stat+"="); ok {
			n, err := strconv.ParseFloat(v, 64)
			return n, err == nil
		}
	}
	return 0, false
}
