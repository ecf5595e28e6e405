package redisstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// TestCatchUpKeepsNotifications: a stream caught up after the notes
// subscription reconnects must also get a message whose notification
// arrives between the catch-up's read in Redis and its result being
// applied. The message is published at exactly that moment (a hook after
// the read, which waits until its notification has been handled); it must
// reach the stream at once, not wait for the next publication.
func TestCatchUpKeepsNotifications(t *testing.T) {
	srv := redistest.Start(t)
	s := startOn(t, srv, "catchup:")
	waitFor(t, "the notes subscription", s.subscribed.Load)
	sub, err := s.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	if _, err := s.Publish("c", &pushstore.Message{Body: []byte("before")}, pub()); err != nil {
		t.Fatal(err)
	}
	if got := take(t, sub); got != "before" {
		t.Fatalf("first message: %q", got)
	}

	onFetched := publishHeard(t, s, "c", "during", pub())
	testHookFetched.Store(&onFetched)
	t.Cleanup(func() { testHookFetched.Store(nil) })
	killNotes(t, srv)
	if got := take(t, sub); got != "during" {
		t.Fatalf("after the catch-up: %q", got)
	}
}

// publishHeard returns a function that, the first time it runs, publishes
// body on key of s and waits (up to 5 s) until s has handled the
// publication's notification (through testHookDelivered, which it sets
// until the test ends), then does the same for each of more.
func publishHeard(t *testing.T, s *Store, key, body string, o pushstore.PublishOptions, more ...heardPub) func() {
	delivered := make(chan struct{}, 16)
	onDelivered := func() { delivered <- struct{}{} }
	testHookDelivered.Store(&onDelivered)
	t.Cleanup(func() { testHookDelivered.Store(nil) })
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, p := range append([]heardPub{{body, o}}, more...) {
				if _, err := s.Publish(key, &pushstore.Message{Body: []byte(p.body)}, p.o); err != nil {
					t.Error(err)
					return
				}
				select {
				case <-delivered:
				case <-time.After(5 * time.Second):
					t.Errorf("the notification of %q never came", p.body)
				}
			}
		})
	}
}

// heardPub is a publication for publishHeard.
type heardPub struct {
	body string
	o    pushstore.PublishOptions
}

// killNotes closes srv's pub/sub connections: each store subscribes again
// and catches its streams up.
func killNotes(t *testing.T, srv *redistest.Server) {
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
}

// take waits up to 5 s for sub's next delivery and returns its body.
func take(t *testing.T, sub pushstore.Subscription) string {
	t.Helper()
	select {
	case <-sub.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5 s")
	}
	ds, end := sub.Take(nil)
	if len(ds) != 1 {
		t.Fatalf("%d deliveries (end %v)", len(ds), end)
	}
	return string(ds[0].Message.Body)
}

// TestCatchUpSendsUnstoredMessages: a message that is not stored
// (store_messages off) and whose notification the instance received while
// a stream was being caught up must reach the stream: the fetch cannot
// return it. It is published just before the catch-up's fetch, which
// waits until its notification was held.
func TestCatchUpSendsUnstoredMessages(t *testing.T) {
	srv := redistest.Start(t)
	s := startOn(t, srv, "unstored:")
	waitFor(t, "the notes subscription", s.subscribed.Load)
	sub, err := s.Follow([]string{"u"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	unstored := pub()
	unstored.StoreMessages = false
	if _, err := s.Publish("u", &pushstore.Message{Body: []byte("before")}, unstored); err != nil {
		t.Fatal(err)
	}
	if got := take(t, sub); got != "before" {
		t.Fatalf("first message: %q", got)
	}

	// "during" is not stored, "stored" is, after it: the fetch returns
	// only "stored" (before, "during" was lost: it came after a fetch that
	// had nothing, then, with the fix's first form, before a newer one).
	onFetching := publishHeard(t, s, "u", "during", unstored, heardPub{"stored", pub()})
	testHookFetching.Store(&onFetching)
	t.Cleanup(func() { testHookFetching.Store(nil) })
	killNotes(t, srv)
	if got := storetest.Bodies(storetest.AwaitN(t, sub, 2)); fmt.Sprint(got) != "[during stored]" {
		t.Fatalf("after the catch-up: %q, want [during stored]", got)
	}
}
