package redisstore

// A keepalive on its way while a long-poll leaves, and the notifications
// held for members being registered: kept for a settling stream's
// catch-up, and applied to a long-poll whose cursor is from the future.

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
)

// TestKeepaliveAfterCancelRestoresNothing: Sweep reads, under s.mu, that one
// long-poll of a is counted at the channel's gen, and sends the keepalive
// (counted 1 at that gen). The long-poll's client goes away meanwhile: its
// cancel reaches Redis first and takes a's count off. The keepalive, whose
// gen is still the channel's, must not set a's count to 1 with a fresh
// time (it did from ab4f109 to 2e6aae4): nobody waits, but the channel
// would count one subscriber, and no later
// keepalive of a corrects it (a has no subscriber there any more, so it
// keeps the channel no longer): a `first` subscriber of another instance is
// refused (409) until the count lapses, STREAM_TTL (60 s) later, or the
// channel's next event. Before ab4f109 the keepalive only renewed the time
// of a count that still existed. The keepalive is run here with the
// arguments Sweep computed before the cancel (s.run, as Sweep calls it), as
// TestKeepaliveOnItsWayKeepsNewPoll does.
func TestKeepaliveAfterCancelRestoresNothing(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "f20cancel:")
	b := startOn(t, srv, "f20cancel:")
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("x")}, pub()); err != nil {
		t.Fatal(err)
	}
	lp := parkNewest(t, a, "c", false)
	// Sweep's snapshot: no stream, least regGen, polls 1.
	var least int64
	counted := 0
	a.mu.Lock()
	a.local["c"].subs.Each(func(m *member) {
		if m.counted && !m.stream {
			least = m.regGen
			counted++
		}
	})
	a.mu.Unlock()
	if counted != 1 {
		t.Fatalf("%d counted long-polls, want 1", counted)
	}
	lp.Cancel() // its cancel reaches Redis before the keepalive
	if info, _ := a.Info("c"); info.Subscribers != 0 {
		t.Fatalf("after the cancel: %d subscribers, want 0", info.Subscribers)
	}
	if _, err := a.run(context.Background(), scriptKeepalive, "c", a.instance, 0, 0, least, 1); err != nil {
		t.Fatal(err)
	}
	if n := a.Sweep(); n != 0 {
		t.Fatalf("a sent %d keepalives; it has no subscriber left", n)
	}
	info, _ := a.Info("c")
	r, err := b.Subscribe("c", pushstore.SubscribeRequest{Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}})
	if r.Sub != nil {
		r.Sub.Cancel()
	}
	if info.Subscribers != 0 || err != nil {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rdb.Close()
		w := rdb.HGetAll(context.Background(), a.Keys("c")[5]).Val()
		t.Fatalf("nobody waits: %d subscribers (want 0; P{K}:w %v), and a `first` subscriber on b: %v (want admitted)",
			info.Subscribers, w, err)
	}
}

// TestTrimKeepsNotesOfSettlingStream: a stream registers (pending) and
// its follow script answers gen G; before it settles, the instance hears
// p1 (G+2: the notification of G+1 was lost, as on a notes connection
// replaced meanwhile) and p2 (G+3, store_messages off), both held for it.
// settle's replay finds the gap at p1 and starts a catch-up with p1 as the
// missed note; setRechecking then numbers the member's first needed note
// (heldFrom) from the end of the held notes, past p2, though the catch-up
// needs p2 (heard(): the fetch cannot return an unstored message). While
// the fetch is in Redis, 62 more publications bring the held notes to 64:
// the trim drops p1 and p2, which no pending or rechecking member is said
// to need, and the stream never gets p2. Before 1744ce2 the notes were
// held until no member was pending or rechecking.
func TestTrimKeepsNotesOfSettlingStream(t *testing.T) {
	srv, a := ownServer(t, "f20trim:")
	ctx := context.Background()
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("m0")}, pub()); err != nil {
		t.Fatal(err)
	}
	var delivered atomic.Int64
	onDelivered := func() { delivered.Add(1) }
	testHookDelivered.Store(&onDelivered)
	t.Cleanup(func() { testHookDelivered.Store(nil) })

	// The stream, pending: registered here, its script answered, not settled.
	sub := newRedisSub(a, 1, false, 1<<20)
	m := &sub.members[0]
	m.key = "c"
	if !a.register(m) {
		t.Fatal("not registered")
	}
	t.Cleanup(sub.Cancel)
	res, err := a.run(ctx, scriptFollow, "c", 0, cursorScore(false, pushstore.MessageID{}, pushstore.Start{Newest: true}),
		"s", 0, 0, a.instance, a.notes, keyHeader("c"), keyCost("c"))
	if err != nil || str(res[0]) != "ok" {
		t.Fatal(res, err)
	}
	gen, cursor, ct := num(res[2]), str(res[3]), time.Duration(num(res[4]))*time.Millisecond

	// G+1: an event whose notification this instance lost.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if err := rdb.HIncrBy(ctx, a.Keys("c")[0], "gen", 1).Err(); err != nil {
		t.Fatal(err)
	}
	off := pub()
	off.StoreMessages = false
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("p1")}, pub()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("p2")}, off); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "p1 and p2 held", func() bool { return delivered.Load() >= 2 })

	// The catch-up's fetch waits while 62 more are published and held.
	entered, release := make(chan struct{}), make(chan struct{})
	hookOnce(t, &testHookFetching, func() { close(entered); <-release })
	a.settle(m, gen, cursor, ct)
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no catch-up started")
	}
	want := []string{"p1", "p2"}
	for i := range 62 {
		body := fmt.Sprintf("q%d", i)
		want = append(want, body)
		if _, err := a.Publish("c", &pushstore.Message{Body: []byte(body)}, pub()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the 62 held", func() bool { return delivered.Load() >= 64 })
	a.mu.Lock()
	held, base := len(a.local["c"].notes), a.local["c"].notesBase
	a.mu.Unlock()
	close(release)

	got, end := collect(sub, "q61", 3*time.Second)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("the stream got %d messages (end %v), want %d; first %q; missing %v "+
			"(during the catch-up %d notes were held, from #%d)", len(got), end, len(want), first(got, 3),
			missing(want, got), held, base)
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func missing(want, got []string) []string {
	var out []string
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
				break
			}
		}
		if !found {
			out = append(out, w)
		}
	}
	return out
}

var _ = errors.Is

// TestFutureCursorHeldNoteApplied: a long-poll whose cursor is later
// than the next publication's id (a cursor from the future, which waits:
// storetest's "A cursor from the future waits") is answered by the next
// publication when its notification comes after the long-poll settled
// (deliver applies a note at gen+1 whatever its id, as the memory store
// offers every publication to its waiters). When the notification comes
// while the registration is in flight (held), replay's new rule
// (ab4f109: a held message not after the cursor is skipped, taken for one
// from before the gen went back) drops it: the long-poll waits on,
// uncounted (the publication wiped its count), though a publication ended
// its wait; the next publication shows a gap and answers it with that one.
func TestFutureCursorHeldNoteApplied(t *testing.T) {
	_, a := ownServer(t, "f20future:")
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("m0")}, pub()); err != nil {
		t.Fatal(err)
	}
	var delivered atomic.Int64
	onDelivered := func() { delivered.Add(1) }
	testHookDelivered.Store(&onDelivered)
	t.Cleanup(func() { testHookDelivered.Store(nil) })

	sub := newRedisSub(a, 1, true, 0)
	m := &sub.members[0]
	m.key = "c"
	if !a.register(m) {
		t.Fatal("not registered")
	}
	t.Cleanup(sub.Cancel)
	future := cursorScore(true, pushstore.MessageID{Time: time.Now().Add(time.Hour).Unix()}, pushstore.Start{})
	res, err := a.subscribeCall("c", future, pushstore.SubscribeRequest{Wait: true}, 1)
	if err != nil || str(res[0]) != "wait" {
		t.Fatal(res, err)
	}
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("p1")}, pub()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "p1 held", func() bool { return delivered.Load() >= 1 })
	a.settle(m, num(res[3]), str(res[4]), time.Duration(num(res[5]))*time.Millisecond)
	select {
	case <-sub.Ready():
		ds, end := sub.Take(nil)
		if len(ds) != 1 || string(ds[0].Message.Body) != "p1" {
			t.Fatalf("answered %d deliveries (end %v), want p1", len(ds), end)
		}
	case <-time.After(time.Second):
		info, _ := a.Info("c")
		t.Fatalf("a long-poll with a cursor from the future whose registration p1's notification raced "+
			"still waits a second after p1 (live, it would have been answered p1); the channel counts %d subscribers",
			info.Subscribers)
	}
}

// TestLostRegistrationCountRestored: a's long-poll L waits on c
// (concurrency first), counted in P{K}:w with a's interest. Redis fails
// over to a replica that lacked L's registration (asynchronous
// replication: simulated here by removing a's fields from w and i, which
// the registration script wrote together). a's next keepalive finds its
// interest lost and rechecks L ('same': nothing happened), which renews the
// interest. Nothing counts L again: since 2e6aae4 the keepalive never sets
// the long-poll count (before, it set it to the long-polls counted at the
// channel's gen), so L waits uncounted until the channel's next event, and
// a `first` subscriber of b is admitted beside it.
func TestLostRegistrationCountRestored(t *testing.T) {
	t.Skip("known, not handled: docs/redis.md, A long-poll registration lost in a failover")
	srv := redistest.Start(t)
	a := startOn(t, srv, "lostreg:")
	b := startOn(t, srv, "lostreg:")
	waitFor(t, "a's notes subscription", a.subscribed.Load)
	first := pushstore.SubscribeRequest{Create: true, Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}}
	res, err := a.Subscribe("c", first)
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	defer res.Sub.Cancel()
	if _, err := b.Subscribe("c", first); err != pushstore.ErrConflict {
		t.Fatalf("a `first` subscriber while a's long-poll waits: %v, want ErrConflict", err)
	}
	// The promoted replica lacks L's registration: its count and a's interest.
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	keys := a.Keys("c")
	if err := rdb.HDel(ctx, keys[5], a.instance, a.instance+":t").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HDel(ctx, keys[8], a.instance).Err(); err != nil {
		t.Fatal(err)
	}
	sweepDue(t, a, 1) // answers lost: L is rechecked
	waitFor(t, "L's recheck", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		lc := a.local["c"]
		if lc == nil {
			return true
		}
		busy := false
		lc.subs.Each(func(m *member) { busy = busy || m.rechecking })
		return !busy
	})
	sweepDue(t, a, 1) // and the keepalive after
	select {
	case <-res.Sub.Ready():
		t.Fatal("L was answered; it should wait")
	default:
	}
	info, _ := a.Info("c")
	r, err := b.Subscribe("c", first)
	if r.Sub != nil {
		r.Sub.Cancel()
	}
	if err != pushstore.ErrConflict || info.Subscribers != 1 {
		w := rdb.HGetAll(ctx, keys[5]).Val()
		t.Fatalf("L waits, after a's recheck and keepalive: %d subscribers (want 1; P{K}:w %v), and a `first` subscriber on b: %v (want ErrConflict)",
			info.Subscribers, w, err)
	}
}
