package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds tests of the store under Redis's faults: a pub/sub
// connection cut or refused, Redis busy past a read timeout, refusals
// while rechecking, evicted keys.

// busyFor makes Redis at addr run a script of another application for d
// and returns once Redis answers other clients BUSY (busy-reply-threshold
// passed); the returned channel gets the script's result when it ends.
func busyFor(t *testing.T, addr string, d time.Duration) <-chan error {
	t.Helper()
	admin := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: -1})
	t.Cleanup(func() { _ = admin.Close() })
	done := make(chan error, 1)
	go func() {
		done <- admin.Eval(context.Background(), `local t = redis.call('TIME') local s = t[1] * 1000000 + t[2]
			repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > tonumber(ARGV[1]) return 1`,
			nil, d.Microseconds()).Err()
	}()
	probe := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { _ = probe.Close() })
	waitFor(t, "Redis to answer BUSY", func() bool {
		err := probe.Ping(context.Background()).Err()
		return err != nil && strings.HasPrefix(err.Error(), "BUSY")
	})
	return done
}

// TestRefusedResubscribeRecovers: the notes connection breaks while Redis
// is busy running another application's slow script (past
// busy-reply-threshold), so go-redis's new connection sends SUBSCRIBE and
// Redis refuses it with BUSY. Once Redis is free, a publication of
// another instance must still reach a long-poll parked on this one.
func TestRefusedResubscribeRecovers(t *testing.T) {
	quiet, pong := notesQuiet, pongWait
	notesQuiet, pongWait = 200*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { notesQuiet, pongWait = quiet, pong })
	srv := redistest.Start(t, "busy-reply-threshold 50")
	px := newFaultProxy(t, srv.Addr())
	a := NewFromClient(redis.NewClient(&redis.Options{Addr: px.ln.Addr().String(), MaxRetries: -1}), "refused:", 0, nil)
	a.Start()
	t.Cleanup(func() { _ = a.Close() })
	b := startOn(t, srv, "refused:")
	waitFor(t, "a subscribed", a.subscribed.Load)
	waitFor(t, "b subscribed", b.subscribed.Load)
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	defer res.Sub.Cancel()

	busy := busyFor(t, srv.Addr(), time.Second)
	px.cut() // a's notes connection: go-redis subscribes again at once, while Redis is busy
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to publish", func() bool {
		_, err := b.Publish("c", &pushstore.Message{Body: []byte("m1")}, pub())
		return err == nil
	})
	select {
	case <-res.Sub.Ready():
	case <-time.After(10 * time.Second):
		n := b.client.(*redis.Client).PubSubNumSub(context.Background(), b.notes).Val()[b.notes]
		t.Fatalf("the long-poll is deaf 10 s after the publication (a subscribed %v; %d connections on the notes channel, b's included)",
			a.subscribed.Load(), n)
	}
	if ds, end := res.Sub.Take(nil); len(ds) != 1 || string(ds[0].Message.Body) != "m1" {
		t.Fatalf("the long-poll got %d deliveries (end %v), want m1", len(ds), end)
	}
}

// TestLateRegistrationNotCounted: a long-poll whose registration is
// answered late (Redis busy past read_timeout) fails (503), and its
// subscriber is gone; the script still runs once Redis is free, and counts
// a waiter nobody is. It must not count it for long: `concurrency first`
// would refuse every subscriber (409) and publications would answer 201
// ("delivered") until the channel's next event. Its count lapses as a
// dead instance's does (nothing here keeps it alive).
func TestLateRegistrationNotCounted(t *testing.T) {
	srv := redistest.Start(t)
	s := impatientStore(t, []string{srv.Addr()}, "late:")
	other := startOn(t, srv, "late:") // go-redis's default timeouts
	waitFor(t, "other's notes subscription", other.subscribed.Load)

	busy := stallRedis(t, srv.Addr())
	first := pushstore.SubscribeRequest{Create: true, Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}}
	if res, err := s.Subscribe("c", first); err == nil {
		if res.Sub != nil {
			res.Sub.Cancel()
		}
		t.Fatal("a long-poll was registered while Redis was busy past read_timeout")
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	// The late registration has run (Redis runs what it read in order);
	// nobody waits on c, and a minute later its count has lapsed.
	skew := shareClock(s, other)
	skew.Store(int64(streamTTL + time.Second))
	info, err := other.Info("c")
	if err != nil {
		t.Fatal(err)
	}
	res, err := other.Subscribe("c", first)
	if err == nil && res.Sub != nil {
		res.Sub.Cancel()
	}
	if info.Subscribers != 0 || err != nil {
		pr, perr := other.Publish("c", &pushstore.Message{Body: []byte("m")}, pub())
		t.Fatalf("after a registration that failed (503), nobody waiting: c counts %d subscribers, a `first` "+
			"long-poll gets %v, and a publication reports %d delivered (%v)", info.Subscribers, err, pr.Delivered, perr)
	}
}

// cutPair starts two stores on srv, a through a faultProxy and b
// directly, both subscribed, with a's listener on short times.
func cutPair(t *testing.T, srv *redistest.Server, prefix string) (a, b *Store, px *faultProxy) {
	return proxiedPair(t, srv, prefix, &redis.Options{MaxRetries: -1})
}

// TestResubscribedDuringCatchUp: a stream's catch-up (after a's notes
// connection broke) has read Redis when the notes connection breaks
// again; another instance publishes while a hears nothing, and a
// subscribes again before the catch-up's answer is applied. The
// resubscription leaves the stream alone (it is being rechecked), and the
// catch-up's answer predates the publication: the stream must still get
// the message, not stay deaf until the channel's next publication.
func TestResubscribedDuringCatchUp(t *testing.T) {
	srv := redistest.Start(t)
	a, b, px := cutPair(t, srv, "again:")
	sub, err := a.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	ran := hookOnce(t, &testHookFetched, func() {
		px.hold(true)
		px.cut() // a hears nothing, and cannot subscribe again yet
		waitFor(t, "a to see its notes connection broken", func() bool { return !a.subscribed.Load() })
		if _, err := b.Publish("c", &pushstore.Message{Body: []byte("m1")}, pub()); err != nil {
			t.Error(err)
		}
		epoch := a.epoch.Load()
		px.hold(false)
		waitFor(t, "a subscribed again", func() bool { return a.epoch.Load() > epoch })
	})
	px.cut() // a subscribes again and catches the stream up: the hook runs
	getsOnly(t, sub, "m1", func() string {
		return fmt.Sprintf("the stream did not get m1, published while a's notes connection was broken, within 10 s (hook ran: %v)", ran.Load())
	})
}

// TestResubscribedDuringRecheck: the same for a parked long-poll, whose
// recheck answered "same" from before the publication.
func TestResubscribedDuringRecheck(t *testing.T) {
	srv := redistest.Start(t)
	a, b, px := cutPair(t, srv, "again:")
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	defer res.Sub.Cancel()
	ran := hookOnce(t, &testHookRechecked, func() {
		px.hold(true)
		px.cut()
		waitFor(t, "a to see its notes connection broken", func() bool { return !a.subscribed.Load() })
		if _, err := b.Publish("c", &pushstore.Message{Body: []byte("m1")}, pub()); err != nil {
			t.Error(err)
		}
		epoch := a.epoch.Load()
		px.hold(false)
		waitFor(t, "a subscribed again", func() bool { return a.epoch.Load() > epoch })
	})
	px.cut()
	getsOnly(t, res.Sub, "m1", func() string {
		return fmt.Sprintf("the long-poll did not get m1, published while a's notes connection was broken, within 10 s (hook ran: %v)", ran.Load())
	})
}

// TestRecipientRuleKeepsMissedMessage: a long-poll and a stream wait on
// a channel while their instance's notes connection is broken; another
// instance publishes m1 with min_message_recipients 1 (and no min buffer).
// The publication counts both waiters as recipients and removes m1 at
// once, though neither is sent it: when the instance subscribes again,
// its recheck and catch-up find nothing. The docs promise that "the
// rechecks deliver what they missed".
func TestRecipientRuleKeepsMissedMessage(t *testing.T) {
	t.Skip("known, not handled: docs/redis.md, Recipient rules across a broken subscription")
	srv := redistest.Start(t)
	a, b, px := cutPair(t, srv, "rule:")
	poll, err := a.Subscribe("c", pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || poll.Sub == nil {
		t.Fatal(poll, err)
	}
	defer poll.Sub.Cancel()
	stream, err := a.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20, Start: pushstore.Start{Newest: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Cancel()
	once := pub()
	once.MinRecipients, once.MinBufferLength = 1, 0
	px.hold(true)
	px.cut() // a hears nothing, and cannot subscribe again yet
	waitFor(t, "a to see its notes connection broken", func() bool { return !a.subscribed.Load() })
	r, err := b.Publish("c", &pushstore.Message{Body: []byte("m1")}, once)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("m1 published: %d subscribers counted, %d messages stored after it", r.Delivered, r.Info.Messages)
	px.hold(false)
	select {
	case <-poll.Sub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll got nothing within 10 s of the resubscription")
	}
	ds, end := poll.Sub.Take(nil)
	var streamGot []string
	deadline := time.After(3 * time.Second)
wait:
	for {
		select {
		case <-stream.Ready():
			got, _ := stream.Take(nil)
			for _, d := range got {
				streamGot = append(streamGot, string(d.Message.Body))
			}
			if len(streamGot) > 0 {
				break wait
			}
		case <-deadline:
			break wait
		}
	}
	if len(ds) != 1 || string(ds[0].Message.Body) != "m1" || len(streamGot) != 1 {
		t.Fatalf("published while a's notes connection was broken, m1 was counted as received by a's two "+
			"waiters and removed: the long-poll got %d deliveries (end %v: 5 is Retry, a 304), the stream got %q "+
			"in 3 s; want m1 for both", len(ds), end, streamGot)
	}
}

// TestRecheckCountsOnce: a long-poll (or a stream) waits on a channel
// while its instance's notes connection is broken; another instance
// publishes m1 with min_message_recipients 2 (no min buffer). The
// publication counts the waiter as one recipient; the recheck (the
// catch-up) after the resubscription sends it m1 and counts it again, so
// m1, received once, is removed: a second subscriber never gets it.
func TestRecheckCountsOnce(t *testing.T) {
	for _, kind := range []string{"long-poll", "stream"} {
		t.Run(kind, func(t *testing.T) {
			srv := redistest.Start(t)
			a, b, px := cutPair(t, srv, "twice:")
			if _, err := b.Touch("c", time.Hour); err != nil {
				t.Fatal(err)
			}
			var sub pushstore.Subscription
			if kind == "stream" {
				var err error
				if sub, err = a.Follow([]string{"c"}, pushstore.FollowRequest{QueueBytes: 1 << 20, Start: pushstore.Start{Newest: true}}); err != nil {
					t.Fatal(err)
				}
			} else {
				res, err := a.Subscribe("c", pushstore.SubscribeRequest{Wait: true, Start: pushstore.Start{Newest: true}})
				if err != nil || res.Sub == nil {
					t.Fatal(res, err)
				}
				sub = res.Sub
			}
			defer sub.Cancel()
			twice := pub()
			twice.MinRecipients, twice.MinBufferLength = 2, 0
			px.hold(true)
			px.cut()
			waitFor(t, "a to see its notes connection broken", func() bool { return !a.subscribed.Load() })
			if _, err := b.Publish("c", &pushstore.Message{Body: []byte("m1")}, twice); err != nil {
				t.Fatal(err)
			}
			px.hold(false)
			getsOnly(t, sub, "m1", func() string { return "the subscriber got nothing within 10 s of the resubscription" })
			info, err := b.Info("c")
			if err != nil {
				t.Fatal(err)
			}
			if info.Messages != 1 {
				t.Fatalf("m1, sent to one subscriber, is stored %d times, want 1 (min_message_recipients 2: it was counted twice)", info.Messages)
			}
		})
	}
}

// TestEvictedBodiesNotSentEmpty: Redis evicts a channel's message bodies
// (P{K}:d: every key of the store has an expiry, so maxmemory-policy
// volatile-lru, the default of several managed Redis services, may evict
// any of them) while its ids (P{K}:q) stay. A subscriber must not be sent
// the stored message as an empty 200 body, as if it had been published so.
func TestEvictedBodiesNotSentEmpty(t *testing.T) {
	s := newStore(t)
	if _, err := s.Publish("c", &pushstore.Message{Body: []byte("m1"), ContentType: "text/plain"}, pub()); err != nil {
		t.Fatal(err)
	}
	if err := s.client.Del(context.Background(), s.Keys("c")[2]).Err(); err != nil { // as an eviction would
		t.Fatal(err)
	}
	res, err := s.Subscribe("c", pushstore.SubscribeRequest{HasCursor: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sub != nil {
		res.Sub.Cancel()
	}
	if m := res.Message; m != nil && len(m.Body) == 0 {
		t.Fatalf("a message whose body Redis evicted was sent as id %v with an empty body and content type %q", m.ID, m.ContentType)
	}
	sub, err := s.Follow([]string{"c"}, pushstore.FollowRequest{HasCursor: true, Cursors: []pushstore.MessageID{{}}, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	if ds, _ := sub.Take(nil); len(ds) > 0 && len(ds[0].Message.Body) == 0 {
		t.Fatalf("a stream was sent the evicted message %v with an empty body", ds[0].Message.ID)
	}
}

// TestFailedCatchUpKeepsHeardMessages: while a stream is being caught up,
// its instance hears a message published with store_messages off (held
// for the stream), then the catch-up's fetch fails (a's connections cut,
// new ones refused for a moment). The catch-up tried again when Redis
// answers must still send the message heard: the fetch cannot return it.
func TestFailedCatchUpKeepsHeardMessages(t *testing.T) {
	srv := redistest.Start(t)
	a, b, px := cutPair(t, srv, "heard:")
	sub, err := a.Follow([]string{"u"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	off := pub()
	off.StoreMessages = false
	delivered := make(chan struct{}, 16)
	onDelivered := func() { delivered <- struct{}{} }
	testHookDelivered.Store(&onDelivered)
	t.Cleanup(func() { testHookDelivered.Store(nil) })
	onFetched := func() { px.hold(false) } // the fetch has failed: Redis is reachable again
	testHookFetched.Store(&onFetched)
	t.Cleanup(func() { testHookFetched.Store(nil) })
	ran := hookOnce(t, &testHookFetching, func() {
		if _, err := b.Publish("u", &pushstore.Message{Body: []byte("unstored")}, off); err != nil {
			t.Error(err)
		}
		select { // a heard it: held for the stream being caught up
		case <-delivered:
		case <-time.After(5 * time.Second):
			t.Error("a never heard the publication")
		}
		px.hold(true)
		px.cut() // the fetch, next, fails
	})
	px.cut() // a subscribes again and catches the stream up: the hook runs
	getsOnly(t, sub, "unstored", func() string {
		return fmt.Sprintf("the stream did not get the message its instance heard during a failed catch-up within 10 s (hook ran: %v)", ran.Load())
	})
}

// TestFailedRecheckWaitsBeforeTryingAgain: a long-poll is rechecked for a
// notification that showed a gap, another notification comes (and is
// held) while the recheck is in Redis, and Redis refuses the recheck (out
// of memory; LOADING after a restart would do the same). The recheck is
// tried again later (recheckRetry, then longer), not at once in a loop
// while Redis keeps refusing.
func TestFailedRecheckWaitsBeforeTryingAgain(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "loop:")
	waitFor(t, "a subscribed", a.subscribed.Load)
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	defer res.Sub.Cancel()
	var gen int64
	a.mu.Lock()
	a.local["c"].subs.Each(func(m *member) { gen = m.gen })
	a.mu.Unlock()
	var calls atomic.Int64
	onRechecked := func() {
		if calls.Add(1) == 1 { // heard while the first recheck was in Redis
			a.deliver(note{kind: 'm', gen: gen + 3, key: "c", id: "1:1", payload: ""})
		}
	}
	testHookRechecked.Store(&onRechecked)
	t.Cleanup(func() { testHookRechecked.Store(nil) })
	// Redis full (maxmemory, noeviction): every script that writes is
	// refused at once with OOM.
	if err := a.client.ConfigSet(context.Background(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.client.ConfigSet(context.Background(), "maxmemory", "0") })
	// The notification of a publication whose predecessor this instance
	// missed (gen + 2): the long-poll is rechecked.
	a.deliver(note{kind: 'm', gen: gen + 2, key: "c", id: "1:0", payload: ""})
	time.Sleep(time.Second) // what is measured: the calls in one second
	if n := calls.Load(); n > 10 {
		t.Fatalf("while Redis refuses (OOM), one long-poll's recheck was tried %d times in a second (%d goroutines "+
			"now: each failure starts a retry goroutine too), want a few (retry after %v, then longer)",
			n, runtime.NumGoroutine(), recheckRetry)
	}
}

// getsOnly waits up to 10 s for sub to be sent something (failing with
// what nothing says then) and checks that it is one message, body.
func getsOnly(t *testing.T, sub pushstore.Subscription, body string, nothing func() string) {
	t.Helper()
	select {
	case <-sub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal(nothing())
	}
	if ds, end := sub.Take(nil); len(ds) != 1 || string(ds[0].Message.Body) != body {
		t.Fatalf("the subscriber got %d deliveries (end %v), want %q", len(ds), end, body)
	}
}

// hookOnce sets the test hook h to run f the first time it is called,
// and unsets it when the test ends; ran reports whether f has run.
func hookOnce(t *testing.T, h *atomic.Pointer[func()], f func()) (ran *atomic.Bool) {
	ran = new(atomic.Bool)
	var once sync.Once
	fn := func() { once.Do(func() { f(); ran.Store(true) }) }
	h.Store(&fn)
	t.Cleanup(func() { h.Store(nil) })
	return ran
}
