package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
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

	delivered := make(chan struct{}, 16)
	onDelivered := func() { delivered <- struct{}{} }
	var once sync.Once
	onFetched := func() {
		once.Do(func() {
			if _, err := s.Publish("c", &pushstore.Message{Body: []byte("during")}, pub()); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-delivered:
			case <-time.After(5 * time.Second):
				t.Error("the notification of the message published during the catch-up never came")
			}
		})
	}
	testHookDelivered.Store(&onDelivered)
	testHookFetched.Store(&onFetched)
	t.Cleanup(func() { testHookDelivered.Store(nil); testHookFetched.Store(nil) })

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if got := take(t, sub); got != "during" {
		t.Fatalf("after the catch-up: %q", got)
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

	delivered := make(chan struct{}, 16)
	onDelivered := func() { delivered <- struct{}{} }
	var once sync.Once
	onFetching := func() {
		once.Do(func() {
			if _, err := s.Publish("u", &pushstore.Message{Body: []byte("during")}, unstored); err != nil {
				t.Error(err)
				return
			}
			select {
			case <-delivered:
			case <-time.After(5 * time.Second):
				t.Error("the notification of the message published during the catch-up never came")
			}
		})
	}
	testHookDelivered.Store(&onDelivered)
	testHookFetching.Store(&onFetching)
	t.Cleanup(func() { testHookDelivered.Store(nil); testHookFetching.Store(nil) })

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	if got := take(t, sub); got != "during" {
		t.Fatalf("after the catch-up: %q", got)
	}
}
