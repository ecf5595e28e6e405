package redisstore

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// TestCoalescedLongPolls: long-polls of one channel and cursor that come
// while one of theirs is being registered in Redis are registered together
// by one script call, which counts them all. Redis is held (CLIENT PAUSE
// WRITE holds scripts) while the first registration is in it, until the
// others have gathered; then the scripts Redis ran are counted: two, not
// one per long-poll. Each long-poll still gets its own answer: a wait that
// a publication ends, counted in Redis (the publisher's 201 and delivery
// count), or the stored message its cursor is behind, with the recipient
// rule counting every member.
func TestCoalescedLongPolls(t *testing.T) {
	srv := redistest.Start(t)
	s := NewFromClient(redis.NewClient(&redis.Options{Addr: srv.Addr()}), "coalesce:", 0, nil)
	s.Start()
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, "the notes subscription", s.subscribed.Load)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()
	const n = 20

	// together subscribes n long-polls with req while Redis holds the
	// first one's script, and returns their answers and how many scripts
	// Redis ran for them.
	together := func(req pushstore.SubscribeRequest) ([]pushstore.SubscribeResult, int64) {
		t.Helper()
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.Do(ctx, "CLIENT", "PAUSE", 20000, "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		paused := true
		defer func() {
			if paused {
				admin.Do(ctx, "CLIENT", "UNPAUSE")
			}
		}()
		type answer struct {
			res pushstore.SubscribeResult
			err error
		}
		answers := make(chan answer, n)
		subscribe := func() {
			res, err := s.Subscribe("c", req)
			answers <- answer{res, err}
		}
		go subscribe()
		pk := pollKey{"c", cursorScore(req.HasCursor, req.Cursor, req.Start), req.Create}
		gathered := func(want int) func() bool {
			return func() bool {
				s.pollMu.Lock()
				defer s.pollMu.Unlock()
				line := s.polls[pk]
				if line == nil {
					return false
				}
				return want == 0 || line.next != nil && line.next.members == want
			}
		}
		waitFor(t, "the first registration to be in Redis", gathered(0))
		for range n - 1 {
			go subscribe()
		}
		waitFor(t, "the other long-polls to gather behind it", gathered(n-1))
		if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
			t.Fatal(err)
		}
		paused = false
		var out []pushstore.SubscribeResult
		for range n {
			a := <-answers
			if a.err != nil {
				t.Fatal(a.err)
			}
			out = append(out, a.res)
		}
		return out, scriptCalls(t, admin)
	}

	subs, calls := together(pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if calls != 2 {
		t.Errorf("%d long-polls registered by %d scripts, want 2 (the first, then the rest together)", n, calls)
	}
	if got, err := admin.HGet(ctx, s.Keys("c")[5], s.instance).Int(); err != nil || got != n {
		t.Errorf("Redis counts %d waiters here (%v), want %d", got, err, n)
	}
	opts := pub()
	opts.MinRecipients = 2 * n // kept: its recipients are counted below
	res, err := s.Publish("c", &pushstore.Message{Body: []byte("hello")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != n {
		t.Errorf("publication delivered to %d, want %d", res.Delivered, n)
	}
	for i, r := range subs {
		if r.Sub == nil {
			t.Fatalf("long-poll %d: no subscription (message %v)", i, r.Message)
		}
		if got := take(t, r.Sub); got != "hello" {
			t.Errorf("long-poll %d got %q", i, got)
		}
		r.Sub.Cancel()
	}

	// n long-polls behind the stored message: each gets it at once, and
	// its recipient rule counts n (plus the n it was delivered to above).
	got, calls := together(pushstore.SubscribeRequest{Create: true, Wait: true, HasCursor: true})
	if calls != 2 {
		t.Errorf("%d catching-up long-polls took %d scripts, want 2", n, calls)
	}
	for i, r := range got {
		if r.Message == nil || string(r.Message.Body) != "hello" || r.Message.ID != res.ID {
			t.Fatalf("long-poll %d: answer %+v, want the stored message", i, r)
		}
	}
	rule, err := admin.HGet(ctx, s.Keys("c")[4], res.ID.String()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(rule); len(f) != 3 || f[2] != strconv.Itoa(2*n) {
		t.Errorf("recipient rule %q, want %d received", rule, 2*n)
	}
}

// scriptCalls returns the scripts Redis ran since its statistics were
// reset.
func scriptCalls(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var calls int64
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, _ := strconv.ParseInt(v, 10, 64)
		calls += n
	}
	return calls
}
