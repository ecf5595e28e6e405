package caddypush

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/internal/redistest"

	"github.com/redis/go-redis/v9"
)

// follower is a subscriber that follows a channel with its cursor, as the
// seed's client does, and records every body it receives.
type follower struct {
	mu   sync.Mutex
	got  []string
	last atomic.Value // string: the last body received
}

// follow polls url with the cursor of each answer until ctx ends; 304s
// (timeouts, rechecks) and 503s (Redis away) are asked again.
func (f *follower) follow(ctx context.Context, url string) {
	var cur cursor
	for ctx.Err() == nil {
		r, err := doCtx(ctx, h1Client, "GET", url, nil, cur.headers()...)
		switch {
		case err != nil:
			time.Sleep(20 * time.Millisecond) // the server is restarting: not a busy loop
			continue
		case r.status == 200:
			f.mu.Lock()
			f.got = append(f.got, r.body)
			f.mu.Unlock()
			f.last.Store(r.body)
			cur = r.cursor()
		case r.status == 503:
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (f *follower) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

// gaps describes what is missing, repeated or out of order in got, which
// must hold want as one contiguous, ordered run at its end (what came
// before it may differ).
func gaps(got, want []string) string {
	if len(want) == 0 {
		return ""
	}
	start := -1
	for i, b := range got {
		if b == want[0] {
			start = i
			break
		}
	}
	if start < 0 {
		return fmt.Sprintf("never received %q (got %d messages)", want[0], len(got))
	}
	tail := got[start:]
	for i, w := range want {
		if i >= len(tail) {
			return fmt.Sprintf("received %d of %d, last %q", len(tail), len(want), tail[len(tail)-1])
		}
		if tail[i] != w {
			return fmt.Sprintf("message %d is %q, want %q (after %q)", i, tail[i], w, want[max(i-1, 0)])
		}
	}
	if len(tail) > len(want) {
		return fmt.Sprintf("%d messages more than published: %q", len(tail)-len(want), tail[len(want):])
	}
	return ""
}

// TestRedisSubscriptionLossLosesNothing publishes at about 400 messages a
// second on one instance while four subscribers follow the channel with
// their cursors on another, and breaks the instances' notification
// subscriptions several times a second (CLIENT KILL TYPE pubsub; Redis and
// its data untouched); then restarts Redis without persistence. Every
// subscriber must receive every message, in order, once: a waiter may only
// ever get the first message after its cursor, so a notification that
// arrives after one it missed must send it to Redis for the right one.
// After the restart the messages stored before it are gone with Redis's
// data, but every one published after Redis came back must arrive.
func TestRedisSubscriptionLossLosesNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "appendonly no") // a restart loses the data
	a, b, _ := twoInstances(t, srv.Addr())
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer admin.Close()

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	followers := make([]*follower, 4)
	var wg sync.WaitGroup
	for i := range followers {
		followers[i] = &follower{}
		wg.Go(func() { followers[i].follow(ctx, b.url+"/sub?id=kill") })
	}
	defer wg.Wait()
	defer stop()
	waitFor(t, "four waiters", func() bool { return a.subscribers(t, "kill") == 4 })

	// publish sends n numbered messages at about 400 a second, retrying
	// 503s, and returns the bodies it published.
	publish := func(from, n int) []string {
		var sent []string
		tick := time.NewTicker(2500 * time.Microsecond)
		defer tick.Stop()
		for i := from; i < from+n; i++ {
			<-tick.C
			body := strconv.Itoa(i)
			for try := 0; ; try++ {
				r := post(t, a.url+"/pub/big?id=kill", body)
				if r.status == 201 || r.status == 202 {
					break
				}
				if r.status != 503 || try > 500 {
					t.Fatalf("publish %d: %d %q", i, r.status, r.body)
				}
				time.Sleep(10 * time.Millisecond)
			}
			sent = append(sent, body)
		}
		return sent
	}
	caughtUp := func(what string, last string) {
		t.Helper()
		waitWithin(t, 30*time.Second, what, func() bool {
			for _, f := range followers {
				if v, _ := f.last.Load().(string); v != last {
					return false
				}
			}
			return true
		})
	}

	// Phase 1: the notes subscriptions of both instances broken every
	// 150 ms while 1200 messages go out.
	kills := make(chan int)
	go func() {
		n := 0
		defer func() { kills <- n }()
		tick := time.NewTicker(150 * time.Millisecond)
		defer tick.Stop()
		for range 40 {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if k, err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result(); err == nil {
				n += int(k)
			}
		}
	}()
	sent := publish(0, 1200)
	if n := <-kills; n < 10 {
		t.Fatalf("only %d subscriptions were killed", n)
	}
	caughtUp("every follower to receive the last message", sent[len(sent)-1])
	for i, f := range followers {
		if g := gaps(f.received(), sent); g != "" {
			t.Fatalf("follower %d, with the subscription killed under it: %s", i, g)
		}
	}

	// Phase 2: Redis restarts and has lost every message; what is
	// published after it returns must all arrive.
	srv.Kill()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	after := publish(1200, 300)
	caughtUp("every follower to receive the last message after the restart", after[len(after)-1])
	for i, f := range followers {
		if g := gaps(f.received(), after); g != "" {
			t.Fatalf("follower %d, after Redis restarted without its data: %s", i, g)
		}
	}
}
