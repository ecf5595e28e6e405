package caddypush

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// TestRedisScriptReplies runs every script of the Redis store on a real
// redis-server and checks that each answers a list whose first element is
// a word the caller knows: RedisStore.run reads every answer as a list, and
// a script that answered a bare number failed every call (cancels on
// disconnect and at exit, keepalives) and was logged as an outage.
func TestRedisScriptReplies(t *testing.T) {
	srv := testRedis(t)
	rs := newRedisStore(redis.NewClient(&redis.Options{Addr: srv.addr()}),
		fmt.Sprintf("replies%d:", time.Now().UnixNano()), 0, zap.NewNop())
	t.Cleanup(func() { _ = rs.Destruct() })
	ctx := t.Context()
	key := "/replies"
	opts := defaultPublishOptions()
	gen := func() int64 {
		n, err := rs.client.HGet(ctx, rs.keys(key)[0], "gen").Int64()
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
		{redisTouch, func() []any { return []any{time.Hour.Milliseconds(), keyCost(key)} }, []string{"ok"}},
		{redisPublish, func() []any {
			return []any{1, opts.MaxBufferLength, opts.MinBufferLength, 0, 0, opts.MessageTimeout.Milliseconds(),
				opts.ChannelTimeout.Milliseconds(), "text/plain\nhello", encodeOptions(opts), rs.notes,
				keyHeader(key), keyCost(key), ""}
		}, nil}, // answers the new id first
		{redisSubscribe, func() []any {
			return []any{1, "-1", 1, 0, 0, rs.instance, rs.notes, keyHeader(key), keyCost(key)}
		}, []string{"msg"}},
		{redisSubscribe, func() []any {
			return []any{1, "newest", 1, 0, 0, rs.instance, rs.notes, keyHeader(key), keyCost(key)}
		}, []string{"wait"}},
		{redisRecheck, func() []any { return []any{"-1", gen(), rs.instance} }, []string{"msg"}},
		{redisRecheck, func() []any {
			return []any{cursorScore(SubscribeRequest{HasCursor: true,
				Cursor: MessageID{Time: 1 << 40}}), gen(), rs.instance}
		}, []string{"same"}},
		{redisRecheck, func() []any {
			return []any{cursorScore(SubscribeRequest{HasCursor: true,
				Cursor: MessageID{Time: 1 << 40}}), gen() - 1, rs.instance}
		}, []string{"changed"}},
		{redisKeepalive, func() []any { return nil }, []string{"ok"}},
		{redisCancel, func() []any { return []any{rs.instance, gen(), 1} }, []string{"ok"}},
		{redisCancel, func() []any { return []any{rs.instance, gen() - 1, 1} }, []string{"stale"}},
		{redisInfo, func() []any { return nil }, []string{"ok"}},
		{redisDelete, func() []any { return []any{rs.notes, keyHeader(key)} }, []string{"ok"}},
		{redisInfo, func() []any { return nil }, []string{"nf"}},
		{redisKeepalive, func() []any { return nil }, []string{"nf"}},
		{redisDelete, func() []any { return []any{rs.notes, keyHeader(key)} }, []string{"nf"}},
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
	for i, sc := range redisScripts {
		if !covered[sc] {
			t.Errorf("script %d of redisScripts is not checked here", i)
		}
	}
}
