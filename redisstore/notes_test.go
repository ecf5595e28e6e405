package redisstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// This file tests which publications are notified: only those of a
// channel where some instance's interest lasts (the register i), and what
// renews an instance's interest when Redis lost it.

// noteKeys returns the channel keys of the notifications on pubsub, in the
// order Redis sent them, until it has n (waiting up to 5 s for each).
func noteKeys(t *testing.T, pubsub *redis.PubSub, n int) []string {
	t.Helper()
	var keys []string
	for len(keys) < n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msg, err := pubsub.ReceiveMessage(ctx)
		cancel()
		if err != nil {
			t.Fatalf("after notifications of %q: %v", keys, err)
		}
		note, ok := parseNote(msg.Payload)
		if !ok {
			t.Fatalf("a malformed notification: %q", msg.Payload)
		}
		keys = append(keys, note.key)
	}
	return keys
}

// listenNotes subscribes a client of its own to s's notes channel and
// returns it once the subscription is confirmed.
func listenNotes(t *testing.T, srv *redistest.Server, s *Store) *redis.PubSub {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	pubsub := c.Subscribe(context.Background(), s.notes)
	t.Cleanup(func() { _ = pubsub.Close() })
	if _, err := pubsub.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pubsub
}

// parkNewest parks a long-poll on key of s that waits for the next
// publication (creating the channel when create is set); it is cancelled
// when the test ends.
func parkNewest(t *testing.T, s *Store, key string, create bool) pushstore.Subscription {
	t.Helper()
	res, err := s.Subscribe(key, pushstore.SubscribeRequest{Create: create, Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || res.Sub == nil {
		t.Fatalf("long-poll on %s: %v %v", key, res, err)
	}
	t.Cleanup(res.Sub.Cancel)
	return res.Sub
}

// openStream opens a stream on key of s, creating the channel; it is
// cancelled when the test ends.
func openStream(t *testing.T, s *Store, key string) pushstore.Subscription {
	t.Helper()
	sub, err := s.Follow([]string{key}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Cancel)
	return sub
}

// sweepDue makes the keepalives of every channel of s due and sweeps,
// failing unless want keepalives are sent.
func sweepDue(t *testing.T, s *Store, want int) {
	t.Helper()
	s.mu.Lock()
	for _, lc := range s.local {
		lc.kept = time.Now().Add(-time.Hour)
	}
	s.mu.Unlock()
	if n := s.Sweep(); n != want {
		t.Fatalf("%d keepalives sent, want %d", n, want)
	}
}

// ownServer starts a redis-server for the test alone (it may be flushed
// or have its connections killed) and a store on it, subscribed.
func ownServer(t *testing.T, prefix string) (*redistest.Server, *Store) {
	t.Helper()
	srv := redistest.Start(t)
	s := startOn(t, srv, prefix)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	return srv, s
}

// bothGet waits for a long-poll to be answered with lpBody and for a
// stream to be sent streamBody.
func bothGet(t *testing.T, lp pushstore.Subscription, lpBody string, stream pushstore.Subscription, streamBody string) {
	t.Helper()
	if body, end := storetest.Await(t, lp); body != lpBody {
		t.Fatalf("the long-poll got %q (end %v), want %q", body, end, lpBody)
	}
	if got := storetest.Bodies(storetest.AwaitN(t, stream, 1)); got[0] != streamBody {
		t.Fatalf("the stream got %q, want %q", got, streamBody)
	}
}

// TestNotesOnlyWhereInterested: a publication on a channel where no
// instance has registered a subscriber sends no notification (every
// instance would read it for nothing); one on a channel with a parked
// long-poll or an open stream does, and goes on doing so while the
// instance's interest lasts (channel_timeout, at least streamTTL): after
// the stream's count lapsed and after it left. Once the interest lapsed
// (here with the channel), it does not. Redis sends notifications in the
// order its scripts ran, so a publication without a notification is seen
// as the next one's coming first.
func TestNotesOnlyWhereInterested(t *testing.T) {
	srv := redistest.Shared(t)
	s := newStore(t)
	var skew atomic.Int64
	s.SetClockSkew(func() time.Duration { return time.Duration(skew.Load()) })
	notes := listenNotes(t, srv, s)

	lp := parkNewest(t, s, "lp", true)
	stream := openStream(t, s, "st")
	for _, key := range []string{"nobody", "lp", "nobody", "st"} {
		storetest.Publish(t, s, key, "m", pub())
	}
	if got := noteKeys(t, notes, 2); got[0] != "lp" || got[1] != "st" {
		t.Fatalf("notifications of %q, want [lp st]", got)
	}
	if body, end := storetest.Await(t, lp); body != "m" {
		t.Fatalf("the long-poll got %q (end %v)", body, end)
	}
	storetest.AwaitN(t, stream, 1)

	// The stream's count lapses: it is still notified.
	skew.Store(int64(streamTTL + time.Second))
	storetest.Publish(t, s, "st", "lapsed", pub())
	if got := noteKeys(t, notes, 1); got[0] != "st" {
		t.Fatalf("notification of %q, want st", got)
	}
	if got := storetest.Bodies(storetest.AwaitN(t, stream, 1)); got[0] != "lapsed" {
		t.Fatalf("the stream got %q", got)
	}

	// The stream leaves: notified while the interest lasts.
	stream.Cancel()
	waitFor(t, "the stream's count to go", func() bool {
		return s.client.HExists(context.Background(), s.Keys("st")[7], s.instance).Val() == false
	})
	storetest.Publish(t, s, "st", "to nobody", pub())
	if got := noteKeys(t, notes, 1); got[0] != "st" {
		t.Fatalf("notification of %q, want st", got)
	}

	// An hour on, the channel and its interest are gone (its messages
	// expired, nobody waits): a publication makes it again, unheard.
	skew.Add(int64(pushstore.DefaultChannelTimeout + time.Second))
	parkNewest(t, s, "lp", true)
	storetest.Publish(t, s, "st", "unheard", pub())
	storetest.Publish(t, s, "lp", "heard", pub())
	if got := noteKeys(t, notes, 1); got[0] != "lp" {
		t.Fatalf("notification of %q, want lp", got)
	}
}

// TestStaleKeepaliveCount: a keepalive sets its instance's stream count to
// the streams it counted when it was sent, so one that was on its way when
// another stream registered sets one too few; if the streams counted then
// leave, the count goes while a stream is open. Its instance must still be
// notified: counts are not what decides (a first form of this change,
// which notified only instances with a count, left the open stream
// unheard).
func TestStaleKeepaliveCount(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	first := openStream(t, s, "c")
	second := openStream(t, s, "c")
	// What a keepalive sent before the second stream registered sets.
	var gen int64
	s.mu.Lock()
	s.local["c"].subs.Each(func(m *member) { gen = m.regGen })
	s.mu.Unlock()
	if _, err := s.run(context.Background(), scriptKeepalive, "c", s.instance, 1, gen, gen, 0); err != nil {
		t.Fatal(err)
	}
	first.Cancel()
	waitFor(t, "the first stream's cancel", func() bool {
		return s.client.HExists(context.Background(), s.Keys("c")[7], s.instance).Val() == false
	})
	storetest.Publish(t, s, "c", "heard", pub())
	if got := storetest.Bodies(storetest.AwaitN(t, second, 1)); got[0] != "heard" {
		t.Fatalf("the open stream got %q", got)
	}
}

// TestKeepaliveFindsLostChannel: when Redis loses a channel under its
// subscribers without dropping the connections (FLUSHALL), a publication
// that makes the channel again counts nobody and notifies nobody; the
// instance's next keepalive finds the channel gone or made again and looks
// its subscribers up: a stream ends as deleted (its client resumes with
// its last id), a long-poll gets the new message, one on a channel that is
// still gone gets 304. (Before, such subscribers waited for the
// notification of a later publication.)
func TestKeepaliveFindsLostChannel(t *testing.T) {
	srv, s := ownServer(t, "lost:")
	again := parkNewest(t, s, "again", true)
	gone := parkNewest(t, s, "gone", true)
	stream := openStream(t, s, "again")

	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := admin.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	storetest.Publish(t, s, "again", "after", pub())

	sweepDue(t, s, 2)
	if _, end := storetest.Await(t, stream); end != pushstore.Deleted {
		t.Fatalf("the stream: end %v, want Deleted", end)
	}
	if body, end := storetest.Await(t, again); body != "after" {
		t.Fatalf("the long-poll on the channel made again: %q (end %v), want after", body, end)
	}
	if body, end := storetest.Await(t, gone); body != "" || end != pushstore.Retry {
		t.Fatalf("the long-poll on the channel still gone: %q (end %v), want Retry", body, end)
	}
}

// TestRecheckRestoresInterest: a replica promoted before it had a
// subscriber's registration lacks its instance's interest, and would
// notify nobody of the channel's publications. The resubscription after
// the failover looks every subscriber up (here the notes connection is
// killed and the interest deleted by hand, as such a replica would lack
// it): a long-poll that stays parked and a stream that goes on renew it,
// and the next publications reach them, and a second long-poll of the
// instance after the first left (a count put back as 1 for two long-polls
// would have gone with the first).
func TestRecheckRestoresInterest(t *testing.T) {
	srv, s := ownServer(t, "restore:")
	lp := parkNewest(t, s, "lp", true)
	leaver := parkNewest(t, s, "lp", true)
	stream := openStream(t, s, "st")

	ctx := context.Background()
	ilp, ist := s.Keys("lp")[8], s.Keys("st")[8]
	if err := s.client.Del(ctx, ilp, ist, s.Keys("lp")[5]).Err(); err != nil {
		t.Fatal(err)
	}
	killNotes(t, srv)
	waitFor(t, "the interest back", func() bool {
		n, err := s.client.Exists(ctx, ilp, ist).Result()
		return err == nil && n == 2
	})
	leaver.Cancel()
	waitFor(t, "the leaver gone", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.local["lp"].subs.Len() == 1
	})
	storetest.Publish(t, s, "lp", "to the long-poll", pub())
	storetest.Publish(t, s, "st", "to the stream", pub())
	bothGet(t, lp, "to the long-poll", stream, "to the stream")
}

// TestKeepaliveFindsLostInterest: a Cluster node that fails over to a
// replica without its instances' interest leaves their notes connection
// (on another node) up, so nothing is rechecked; a publication then
// notifies nobody. The instance's next keepalive finds its interest gone,
// renews it and looks its subscribers up: the stream and the long-poll get
// the message published meanwhile. (Here the interest is deleted by hand.)
func TestKeepaliveFindsLostInterest(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	lp := parkNewest(t, s, "c", true)
	stream := openStream(t, s, "c")
	if err := s.client.Del(context.Background(), s.Keys("c")[8]).Err(); err != nil {
		t.Fatal(err)
	}
	storetest.Publish(t, s, "c", "meanwhile", pub())
	sweepDue(t, s, 1)
	bothGet(t, lp, "meanwhile", stream, "meanwhile")
}

// TestRegistrationKeepsKeepalive: registrations on a channel do not put
// off its keepalive (a channel whose long-polls re-poll more often than
// its keepalive period would otherwise never be kept, and its lost
// interest never found).
func TestRegistrationKeepsKeepalive(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	openStream(t, s, "c")
	s.mu.Lock()
	s.local["c"].kept = time.Now().Add(-time.Hour) // its keepalive is due
	s.mu.Unlock()
	parkNewest(t, s, "c", false)
	if n := s.Sweep(); n != 1 {
		t.Fatalf("%d keepalives sent after a registration, want 1", n)
	}
}

// TestKeepaliveLearnsChannelTimeout: an instance keeps a channel every
// third of the channel_timeout it knows, and each keepalive renews its
// interest for the channel's (at least streamTTL). A publisher that
// shortens the channel_timeout after a long-poll registered must not
// leave the instance keeping the channel less often than its interest
// needs: the keepalive tells it the channel's. (Before, the instance went
// on keeping it every 20 minutes, a third of the hour it learned, while
// each keepalive gave its interest a minute.)
func TestKeepaliveLearnsChannelTimeout(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	parkNewest(t, s, "c", true)
	o := pub()
	o.StoreMessages = false
	o.ChannelTimeout = 3 * time.Second
	if _, err := s.Touch("c", o.ChannelTimeout); err != nil {
		t.Fatal(err)
	}
	sweepDue(t, s, 1)
	s.mu.Lock()
	ct := s.local["c"].ct
	s.mu.Unlock()
	if ct != 3*time.Second {
		t.Fatalf("the instance keeps the channel by a channel_timeout of %v, want 3s", ct)
	}
}

// TestInterestNeverShortened: a script answered late may tell the
// instance an older, longer channel_timeout than the channel's latest,
// and the instance keeps the channel by it; so a later registration under
// a shorter channel_timeout must not shorten the interest an earlier one
// gave (before, it did: a keepalive's late reply set the instance back to
// keeping the channel every 20 minutes while its interest lasted a
// minute).
func TestInterestNeverShortened(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	ctx := context.Background()
	parkNewest(t, s, "c", true) // channel_timeout 1 h: interest for an hour
	long, err := s.client.HGet(ctx, s.Keys("c")[8], s.instance).Int64()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Touch("c", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	parkNewest(t, s, "c", false) // channel_timeout 10 s: a minute
	if after, err := s.client.HGet(ctx, s.Keys("c")[8], s.instance).Int64(); err != nil || after < long {
		t.Fatalf("the interest went from %d to %d (%v)", long, after, err)
	}
}

// TestSubMillisecondChannelTimeout: a channel_timeout under a millisecond
// reaches Redis as 1 ms, not 0: an instance learns 0 as "the default" and
// kept the channel every 20 minutes while its interest lasted a minute.
func TestSubMillisecondChannelTimeout(t *testing.T) {
	s := newStore(t)
	o := pub()
	o.ChannelTimeout = 500 * time.Microsecond
	storetest.Publish(t, s, "c", "m", o)
	parkNewest(t, s, "c", false)
	s.mu.Lock()
	ct := s.local["c"].ct
	s.mu.Unlock()
	if ct != time.Millisecond {
		t.Fatalf("the instance keeps the channel by a channel_timeout of %v, want 1ms", ct)
	}
}
