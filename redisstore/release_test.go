package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// TestRegisterDuringReleaseAll: a stream or long-poll whose registration
// begins after its request's first look at the store and after
// ReleaseAll ended every subscriber (an exit, or a reload that let the
// store go) must end Shutdown, not stay open on the released store.
func TestRegisterDuringReleaseAll(t *testing.T) {
	for _, kind := range []string{"stream", "long-poll"} {
		t.Run(kind, func(t *testing.T) {
			s := newStore(t)
			waitFor(t, "the notes subscription", s.subscribed.Load)
			if _, err := s.Touch("r", time.Hour); err != nil {
				t.Fatal(err)
			}
			release := func() {
				testHookRegister.Store(nil)
				s.ReleaseAll()
			}
			testHookRegister.Store(&release)
			t.Cleanup(func() { testHookRegister.Store(nil) })
			var sub pushstore.Subscription
			var err error
			if kind == "stream" {
				sub, err = s.Follow([]string{"r"}, pushstore.FollowRequest{QueueBytes: 1 << 20})
			} else {
				var res pushstore.SubscribeResult
				res, err = s.Subscribe("r", pushstore.SubscribeRequest{Wait: true})
				sub = res.Sub
			}
			if err != nil || sub == nil {
				t.Fatalf("%v, %v", sub, err)
			}
			defer sub.Cancel()
			if _, end := sub.Take(nil); end != pushstore.Shutdown {
				t.Fatalf("registered during ReleaseAll: end %v, want Shutdown", end)
			}
			s.mu.Lock()
			n := len(s.local)
			s.mu.Unlock()
			if n != 0 {
				t.Fatalf("%d channels still have local subscribers", n)
			}
		})
	}
}

// TestSettledAfterReleaseAllIsUncounted: a stream still being registered
// (its script held up: Redis paused) when ReleaseAll ends it is counted by
// its script afterwards, and its end must take that count back; before,
// its leave skipped Redis while the store was closing, and the channel
// counted a subscriber nobody had for a minute.
func TestSettledAfterReleaseAllIsUncounted(t *testing.T) {
	srv := redistest.Start(t) // its own: the pause holds up every client
	s := startOn(t, srv, "settle:")
	waitFor(t, "the notes subscription", s.subscribed.Load)
	if _, err := s.Touch("p", time.Hour); err != nil {
		t.Fatal(err)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", 1000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	type followed struct {
		sub pushstore.Subscription
		err error
	}
	done := make(chan followed, 1)
	go func() {
		sub, err := s.Follow([]string{"p"}, pushstore.FollowRequest{QueueBytes: 1 << 20})
		done <- followed{sub, err}
	}()
	waitFor(t, "the stream pending", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		lc := s.local["p"]
		return lc != nil && lc.pending > 0
	})
	s.ReleaseAll()
	select {
	case <-done:
		t.Fatal("the registration answered before ReleaseAll ran: Redis was not paused long enough")
	default:
	}
	f := <-done
	if f.err != nil {
		t.Fatal(f.err)
	}
	if _, end := f.sub.Take(nil); end != pushstore.Shutdown {
		t.Fatalf("end %v, want Shutdown", end)
	}
	f.sub.Cancel()
	info, err := s.Info("p")
	if err != nil {
		t.Fatal(err)
	}
	if info.Subscribers != 0 {
		t.Fatalf("after the released stream's end the channel counts %d subscribers", info.Subscribers)
	}
}
