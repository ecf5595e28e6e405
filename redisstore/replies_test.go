package redisstore

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// TestRedisScriptReplies runs every script of the Redis store on a real
// redis-server and checks that each answers a list whose first element is
// a word the caller knows: RedisStore.run reads every answer as a list, and
// a script that answered a bare number failed every call (cancels on
// disconnect and at exit, keepalives) and was logged as an outage.
func TestScriptReplies(t *testing.T) {
	srv := redistest.Shared(t)
	rs := NewFromClient(redis.NewClient(&redis.Options{Addr: srv.Addr()}),
		fmt.Sprintf("replies%d:", time.Now().UnixNano()), 0, zap.NewNop())
	t.Cleanup(func() { _ = rs.Close() })
	ctx := t.Context()
	key := "/replies"
	opts := pub()
	gen := func() int64 {
		n, err := rs.client.HGet(ctx, rs.Keys(key)[0], "gen").Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Each script, in an order that leaves the channel in the state the
	// next one needs, with the first words it may answer there.
	calls := []struct {
		script *redis.Script
		args   func() []any
		want   []string
	}{
		{scriptTouch, func() []any { return []any{time.Hour.Milliseconds(), keyCost(key)} }, []string{"ok"}},
		{scriptPublish, func() []any {
			return []any{1, 1, opts.MaxBufferLength, opts.MinBufferLength, 0, 0, opts.MessageTimeout.Milliseconds(),
				opts.ChannelTimeout.Milliseconds(), encodeOptions(opts), rs.notes, keyHeader(key), keyCost(key), "",
				"text/plain\n\nhello"}
		}, nil}, // answers requested first
		{scriptPublishMany, func() []any { // one group: as scriptPublish
			return []any{1, 1, opts.MaxBufferLength, opts.MinBufferLength, 0, 0, opts.MessageTimeout.Milliseconds(),
				opts.ChannelTimeout.Milliseconds(), encodeOptions(opts), rs.notes, keyHeader(key), keyCost(key), "",
				"text/plain\n\nagain"}
		}, nil},
		{scriptSubscribe, func() []any {
			return []any{1, "-1", 1, 0, 0, rs.instance, rs.notes, keyHeader(key), keyCost(key), 1}
		}, []string{"msg"}},
		{scriptSubscribe, func() []any {
			return []any{1, "newest", 1, 0, 0, rs.instance, rs.notes, keyHeader(key), keyCost(key), 1}
		}, []string{"wait"}},
		{scriptRecheck, func() []any { return []any{"-1", gen(), rs.instance} }, []string{"msg"}},
		{scriptRecheck, func() []any {
			return []any{cursorScore(true, pushstore.MessageID{Time: 1 << 40}, pushstore.Start{}), gen(), rs.instance}
		}, []string{"same"}},
		{scriptRecheck, func() []any {
			return []any{cursorScore(true, pushstore.MessageID{Time: 1 << 40}, pushstore.Start{}), gen() - 1, rs.instance}
		}, []string{"changed"}},
		{scriptKeepalive, func() []any { return []any{rs.instance, 0, 0, -1} }, []string{"ok"}},
		{scriptKeepalive, func() []any { return []any{rs.instance, 0, 0, 0} }, []string{"wiped"}},
		{scriptCancel, func() []any { return []any{rs.instance, gen(), 1, "w"} }, []string{"ok"}},
		{scriptCancel, func() []any { return []any{rs.instance, gen() - 1, 1, "w"} }, []string{"stale"}},
		{scriptFollow, func() []any {
			return []any{1, "-1", "s", 0, 0, rs.instance, rs.notes, keyHeader(key), keyCost(key)}
		}, []string{"ok"}},
		{scriptFollow, func() []any {
			return []any{1, "-1", "o", 1, 0, rs.instance, rs.notes, keyHeader(key), keyCost(key)}
		}, []string{"conflict"}},
		{scriptFetch, func() []any { return []any{"-1", gen(), rs.instance} }, []string{"ok"}},
		{scriptFetch, func() []any { return []any{"-1", 0, rs.instance} }, []string{"displaced", "nf"}},
		{scriptReceived, func() []any { return []any{"1:0"} }, []string{"ok"}},
		{scriptCancel, func() []any { return []any{rs.instance, gen(), 1, "s"} }, []string{"ok"}},
		{scriptInfo, func() []any { return nil }, []string{"ok"}},
		{scriptDelete, func() []any { return []any{rs.notes, keyHeader(key)} }, []string{"ok"}},
		{scriptInfo, func() []any { return nil }, []string{"nf"}},
		{scriptKeepalive, func() []any { return []any{rs.instance, 0, 0, -1} }, []string{"nf"}},
		{scriptFetch, func() []any { return []any{"-1", 0, rs.instance} }, []string{"nf"}},
		{scriptReceived, func() []any { return []any{"1:0"} }, []string{"nf"}},
		{scriptDelete, func() []any { return []any{rs.notes, keyHeader(key)} }, []string{"nf"}},
	}
	covered := map[*redis.Script]bool{}
	for i, c := range calls {
		covered[c.script] = true
		res, err := rs.run(ctx, c.script, key, c.args()...)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if first := str(res[0]); c.want != nil && !slices.Contains(c.want, first) {
			t.Fatalf("call %d answered %q first, want one of %q", i, first, c.want)
		}
	}
	for i, sc := range scripts {
		if !covered[sc] {
			t.Errorf("script %d of scripts is not checked here", i)
		}
	}
}
