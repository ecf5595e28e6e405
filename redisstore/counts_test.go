package redisstore

// The parked long-polls' counts and cursors: a notification that comes
// late, a keepalive on its way while a long-poll registers, a new long-poll
// over a lapsed count.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// TestSlowListenerNoOldMessage: the listener is a little behind (it
// is still applying an earlier notification) when a publication with
// store_messages off is followed by a new long-poll and a new stream, which
// register after it (at its gen, cursor -1: nothing is stored). Its
// notification, applied after they registered, is at their gen: it must
// not be sent to them (nchan, and this store before the change, send a
// subscriber with store_messages off only what is published after it
// subscribed). The gen-went-back rule takes it for a failover (a message
// newer than their cursor at a gen they passed), rechecks them, and sends
// it: the long-poll is answered with a message published before it came,
// and its count in P{K}:w is left behind.
func TestSlowListenerNoOldMessage(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "slowlistener:")
	waitFor(t, "a subscribed", a.subscribed.Load)
	s0 := openStream(t, a, "c") // a subscriber already there (interest: the publications are notified)
	off := pub()
	off.StoreMessages = false

	hold, release := make(chan struct{}), make(chan struct{})
	once := false
	hook := func() {
		if !once {
			once = true
			close(hold)
			<-release // the listener is busy with this notification a while
		}
	}
	testHookDelivered.Store(&hook)
	t.Cleanup(func() { testHookDelivered.Store(nil) })
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("m0")}, off); err != nil {
		t.Fatal(err)
	}
	<-hold
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("m1")}, off); err != nil {
		t.Fatal(err)
	}
	// m1 is published; its notification waits behind m0's. A long-poll and
	// a stream come now.
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Wait: true})
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	lp := res.Sub
	defer lp.Cancel()
	s1, err := a.Follow([]string{"c"}, pushstore.FollowRequest{QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Cancel()
	close(release)
	if got := storetest.Bodies(storetest.AwaitN(t, s0, 2)); strings.Join(got, ",") != "m0,m1" {
		t.Fatalf("the first stream got %q, want m0 and m1", got)
	}
	select {
	case <-lp.Ready():
		ds, end := lp.Take(nil)
		body := ""
		if len(ds) > 0 {
			body = string(ds[0].Message.Body)
		}
		lp.Cancel()
		info, _ := a.Info("c")
		t.Errorf("a long-poll that came after m1 was published (store_messages off) was answered %q (end %v); "+
			"after it left, the channel counts %d subscribers, want 2 (the streams)", body, end, info.Subscribers)
	case <-time.After(time.Second):
	}
	select {
	case <-s1.Ready():
		ds, _ := s1.Take(nil)
		t.Errorf("a stream that came after m1 was published (store_messages off) was sent %d messages, the first %q",
			len(ds), ds[0].Message.Body)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestKeepaliveOnItsWayKeepsNewPoll: Sweep reads, under s.mu, how
// many long-polls wait here (none: the channel has a stream alone) and
// then sends the keepalive; a long-poll that registers in between is
// counted by its registration, and the keepalive (polls 0) takes its count
// off. The next keepalive does not put it back (it only refreshes a count
// that exists), so the long-poll waits uncounted until the channel's next
// event: once the stream leaves, the channel counts no subscriber and
// another instance's `first` subscriber is admitted beside the long-poll.
// The keepalive is run here with the arguments Sweep computed before the
// registration (s.run, as Sweep calls it).
func TestKeepaliveOnItsWayKeepsNewPoll(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "kaway:")
	b := startOn(t, srv, "kaway:")
	st, err := a.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var reg int64
	a.mu.Lock()
	a.local["c"].subs.Each(func(m *member) { reg = m.regGen })
	a.mu.Unlock()
	// Sweep's snapshot is taken here: streams 1 registered at reg, least
	// reg, polls 0. Then the long-poll registers.
	parkNewest(t, a, "c", false)
	if info, _ := a.Info("c"); info.Subscribers != 2 {
		t.Fatalf("%d subscribers, want 2 (the stream, the long-poll)", info.Subscribers)
	}
	// The keepalive arrives.
	if _, err := a.run(context.Background(), scriptKeepalive, "c", a.instance, 1, reg, reg, 0); err != nil {
		t.Fatal(err)
	}
	st.Cancel()
	sweepDue(t, a, 1) // the next keepalive: polls 1
	info, _ := a.Info("c")
	r, err := b.Subscribe("c", pushstore.SubscribeRequest{Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}})
	if r.Sub != nil {
		r.Sub.Cancel()
	}
	if info.Subscribers != 1 || !errors.Is(err, pushstore.ErrConflict) {
		t.Fatalf("while a's long-poll waits: %d subscribers (want 1), and a `first` subscriber on b: %v (want ErrConflict)",
			info.Subscribers, err)
	}
}

// TestNewPollOverLapsedCount: an instance's count in P{K}:w that lapsed
// (its ':t' older than STREAM_TTL: a registration answered too late to
// wait, which the instance never knew of) stays in w. A long-poll of that
// instance that registers later makes it count again (countPolls renews
// its time): the new long-poll is counted at once, not only at the
// instance's next keepalive, up to 20 s later.
func TestNewPollOverLapsedCount(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "lapsedpoll:")
	b := startOn(t, srv, "lapsedpoll:")
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("x")}, pub()); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	old := time.Now().Add(-streamTTL - time.Minute).UnixMilli()
	if err := rdb.HSet(context.Background(), a.Keys("c")[5], a.instance, 1, a.instance+":t", old).Err(); err != nil {
		t.Fatal(err)
	}
	parkNewest(t, a, "c", false)
	info, _ := a.Info("c")
	r, err := b.Subscribe("c", pushstore.SubscribeRequest{Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}})
	if r.Sub != nil {
		r.Sub.Cancel()
	}
	if info.Subscribers == 0 || !errors.Is(err, pushstore.ErrConflict) {
		t.Fatalf("while a's new long-poll waits: %d subscribers (want at least 1), and a `first` subscriber on b: %v (want ErrConflict)",
			info.Subscribers, err)
	}
}

// TestHeldNotesBounded: notifications are held for the members being
// registered or rechecked; on a channel whose registrations overlap
// without end (another always pending when one settles, as long-polls
// re-polling while publications go on), those no member needs are
// dropped, not held for as long as the overlap lasts.
func TestHeldNotesBounded(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "held:")
	waitFor(t, "a subscribed", a.subscribed.Load)
	s0 := openStream(t, a, "c") // interest: the publications are notified
	var delivered, peak atomic.Int64
	hook := func() {
		a.mu.Lock()
		if lc := a.local["c"]; lc != nil && int64(len(lc.notes)) > peak.Load() {
			peak.Store(int64(len(lc.notes)))
		}
		a.mu.Unlock()
		delivered.Add(1)
	}
	testHookDelivered.Store(&hook)
	t.Cleanup(func() { testHookDelivered.Store(nil) })
	pending := func() *member {
		sub := newRedisSub(a, 1, true, 0)
		m := &sub.members[0]
		m.key = "c"
		if !a.register(m) {
			t.Fatal("not registered")
		}
		return m
	}
	const n = 500
	prev := pending()
	for i := range n {
		next := pending() // registered before the last one is done: they overlap
		a.unregister(prev)
		prev = next
		if _, err := a.Publish("c", &pushstore.Message{Body: []byte(fmt.Sprint(i))}, pub()); err != nil {
			t.Fatal(err)
		}
		want := int64(i + 1)
		waitFor(t, "the notification applied", func() bool { return delivered.Load() >= want })
	}
	a.unregister(prev)
	if got := storetest.AwaitN(t, s0, n); len(got) != n {
		t.Fatalf("the stream got %d messages, want %d", len(got), n)
	}
	if p := peak.Load(); p > 2*trimEvery {
		t.Fatalf("%d notifications held at once for %d publications, while no member needed more than one", p, n)
	}
}
