package redisstore

// A gen that goes back (held notifications after a failover), evicted
// bodies under seenCursor, and a lapsed long-poll count started again.

import (
	"context"
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

// holdFetch blocks the first catch-up fetch that starts (testHookFetching)
// until the test ends, and returns once it is blocked: that stream is
// being rechecked, so its channel holds every notification that comes
// (lc.notes), as it does on a busy channel while any subscriber is pending
// or rechecking. Later fetches run freely.
func holdFetch(t *testing.T, srv *redistest.Server) {
	t.Helper()
	entered, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	hook := func() {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	testHookFetching.Store(&hook)
	t.Cleanup(func() { close(release); testHookFetching.Store(nil) })
	killNotes(t, srv)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no catch-up started")
	}
}

// goBack makes the channel look as on a replica promoted before it had the
// given publications: its gen, last id and stored messages as they were
// (gen, lt, lg), the later messages gone.
func goBack(t *testing.T, s *Store, srv *redistest.Server, key string, gen, lt, lg string, lost []string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	k := s.Keys(key)
	if err := rdb.HSet(ctx, k[0], "gen", gen, "lt", lt, "lg", lg).Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range lost {
		rdb.ZRem(ctx, k[1], id)
		rdb.HDel(ctx, k[2], id)
		rdb.ZRem(ctx, k[3], id)
	}
}

// TestGenBackHeldNotesNotReplayed: notifications held on a channel (here by
// another stream's catch-up in Redis; on a busy channel by any
// registration in flight) from before the channel's gen went back (a
// failover to a replica that lacked m1..m3) are replayed, after the
// catch-up that the gen-went-back rule starts, to a stream that had
// received them: their gens are above the lower gen the catch-up took. The
// stream is sent m2 and m3 again after n1, and the next publication sends
// it n1 again. A long-poll that comes after the failover with cursor m3
// (its client got m3) is answered m1.
func TestGenBackHeldNotesNotReplayed(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "e20back:")
	waitFor(t, "a subscribed", a.subscribed.Load)
	openStream(t, a, "c") // the holder
	m0, err := a.Publish("c", &pushstore.Message{Body: []byte("m0")}, pub())
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	meta := rdb.HMGet(context.Background(), a.Keys("c")[0], "gen", "lt", "lg").Val()
	holdFetch(t, srv)

	s2 := openStream(t, a, "c")
	if got := take(t, s2); got != "m0" {
		t.Fatalf("s2's backlog: %q", got)
	}
	var lost []string
	var m3 pushstore.MessageID
	for _, b := range []string{"m1", "m2", "m3"} {
		r, err := a.Publish("c", &pushstore.Message{Body: []byte(b)}, pub())
		if err != nil {
			t.Fatal(err)
		}
		lost = append(lost, r.ID.String())
		m3 = r.ID
	}
	if got := storetest.Bodies(storetest.AwaitN(t, s2, 3)); strings.Join(got, ",") != "m1,m2,m3" {
		t.Fatalf("s2 got %q", got)
	}
	_ = m0
	// The failover: the promoted replica lacks m1..m3.
	goBack(t, a, srv, "c", meta[0].(string), meta[1].(string), meta[2].(string), lost)

	// A long-poll whose client got m3 comes now.
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Wait: true, HasCursor: true, Cursor: m3})
	if err != nil || res.Sub == nil {
		t.Fatalf("long-poll after m3: %v %v", res, err)
	}
	lp := res.Sub
	defer lp.Cancel()

	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("n1")}, pub()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("n2")}, pub()); err != nil {
		t.Fatal(err)
	}
	got, end := collect(s2, "", 2*time.Second)
	var problems []string
	if strings.Join(got, ",") != "n1,n2" {
		problems = append(problems, fmt.Sprintf("after the failover the stream that had m1..m3 got %q (end %v), want [n1 n2]", got, end))
	}
	if body, _ := storetest.Await(t, lp); body != "n1" {
		problems = append(problems, fmt.Sprintf("a long-poll with cursor m3 was answered %q, want n1", body))
	}
	if len(problems) > 0 {
		t.Fatal(strings.Join(problems, "; "))
	}
}

// TestEvictedBodiesSeenCursorKeepsStored: more than 64 stored messages
// whose bodies Redis evicted (a maxmemory policy other than noeviction)
// lie before the ones still there. subscribe.lua's firstAfter drops 64 of
// them and finds nothing, so the long-poll waits; seenCursor then settles
// it at the channel's last id, past the stored messages it was never
// sent, so even the recheck after a resubscription (which, from the old
// cursor, would drop the rest and find m65) answers nothing: m65..m69 are
// skipped for good.
func TestEvictedBodiesSeenCursorKeepsStored(t *testing.T) {
	srv, a := ownServer(t, "e20evict:")
	o := pub()
	o.MaxBufferLength = 100
	var ids []string
	for i := range 70 {
		r, err := a.Publish("c", &pushstore.Message{Body: []byte(fmt.Sprintf("m%d", i))}, o)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID.String())
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if err := rdb.HDel(context.Background(), a.Keys("c")[2], ids[:65]...).Err(); err != nil {
		t.Fatal(err)
	}
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Wait: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Message != nil {
		if string(res.Message.Body) != "m65" {
			t.Fatalf("answered %q, want m65", res.Message.Body)
		}
		return
	}
	defer res.Sub.Cancel()
	killNotes(t, srv) // a resubscription rechecks the waiter from its cursor
	select {
	case <-res.Sub.Ready():
		ds, end := res.Sub.Take(nil)
		if len(ds) != 1 || string(ds[0].Message.Body) != "m65" {
			t.Fatalf("after the recheck: %d deliveries (end %v), want m65", len(ds), end)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a long-poll from the oldest message waits while m65..m69 are stored (65 evicted bodies before them), " +
			"and its recheck after a resubscription, from the channel's last id (seenCursor), finds nothing")
	}
}

// TestLapsedCountKeepsItsWaiters: an instance's long-polls L1 and L2 stay
// parked while no keepalive reaches Redis for a minute (Redis out of
// reach; here Redis's clock is moved on), so their count lapses. A new
// long-poll L3 of the instance registers before its next keepalive: the
// count counts again with it (it was set to L3 alone, and once L1 left,
// L2 and L3 waited uncounted: a `first` subscriber elsewhere was admitted
// beside them until the channel's next event).
func TestLapsedCountKeepsItsWaiters(t *testing.T) {
	srv := redistest.Start(t)
	a := startOn(t, srv, "e20lapse:")
	b := startOn(t, srv, "e20lapse:")
	waitFor(t, "a subscribed", a.subscribed.Load)
	if _, err := a.Publish("c", &pushstore.Message{Body: []byte("x")}, pub()); err != nil {
		t.Fatal(err)
	}
	var skew atomic.Int64
	a.SetClockSkew(func() time.Duration { return time.Duration(skew.Load()) })
	l1 := parkNewest(t, a, "c", false)
	parkNewest(t, a, "c", false)
	skew.Store(int64(streamTTL + time.Second)) // a minute without a keepalive
	parkNewest(t, a, "c", false)
	sweepDue(t, a, 1) // Redis reachable again: the keepalive (three long-polls wait)
	l1.Cancel()
	info, _ := a.Info("c")
	r, err := b.Subscribe("c", pushstore.SubscribeRequest{Wait: true, Concurrency: pushstore.First, Start: pushstore.Start{Newest: true}})
	if r.Sub != nil {
		r.Sub.Cancel()
	}
	if info.Subscribers != 2 || err == nil {
		t.Fatalf("while two of a's long-polls wait: %d subscribers (want 2), and a `first` subscriber on b: %v (want ErrConflict)",
			info.Subscribers, err)
	}
}
