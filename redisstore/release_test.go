package redisstore

import (
	"testing"
	"time"

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
