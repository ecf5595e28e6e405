// Package storetest is the conformance suite of the pushstore contract:
// what every store backend must do the same way. Each backend's tests
// call Run with a harness for a fresh store; the memory store runs it in
// pushstore, the Redis store in redisstore.
package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// Harness is a store under test and the means to drive it.
type Harness struct {
	Store pushstore.Store
	// Advance moves the store's clock by d (which may be negative).
	Advance func(d time.Duration)
	// Sweep runs the store's periodic housekeeping now, if it has any.
	Sweep func()
}

// Run runs the suite; newHarness returns a harness on a fresh, empty
// store (or one whose keys no other test uses).
func Run(t *testing.T, newHarness func(t *testing.T) *Harness) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, h *Harness)
	}{
		{"IDsGrowWithinASecondAndWhenTheClockGoesBack", idsGrow},
		{"IDsGrowWhenNothingIsStored", idsGrowUnstored},
		{"CursorTraversal", cursorTraversal},
		{"BufferRules", bufferRules},
		{"RecipientRules", recipientRules},
		{"OneShotCountsOnlyWhatItSends", oneShotCounts},
		{"RefusedStreamTakesNothing", refusedStream},
		{"ChannelNamedTwice", channelNamedTwice},
		{"ShorterChannelTimeoutApplies", shorterChannelTimeout},
		{"ExpiryAndChannelTimeout", expiryAndChannelTimeout},
		{"SubscriptionsBroadcastDeleteAndConcurrency", subscriptions},
		{"AuthorizedOnlyAndStartNewest", authorizedAndNewest},
		{"ReleaseAll", releaseAll},
		{"ConcurrentPublishersLoseNothing", concurrentPublishers},
		{"IDsContinueAfterDelete", idsAfterDelete},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, newHarness(t)) })
	}
}

// Pub are the publication settings of the suite unless a test says
// otherwise: store, buffer 10, min 1, an hour for messages and channels.
var Pub = pushstore.PublishOptions{
	StoreMessages: true, MaxBufferLength: 10, MinBufferLength: 1,
	MessageTimeout: time.Hour, ChannelTimeout: time.Hour,
}

// Publish publishes a text/plain body or fails the test.
func Publish(t testing.TB, s pushstore.Store, key, body string, o pushstore.PublishOptions) pushstore.PublishResult {
	t.Helper()
	r, err := s.Publish(key, &pushstore.Message{Body: []byte(body), ContentType: "text/plain"}, o)
	if err != nil {
		t.Fatalf("publish %q: %v", body, err)
	}
	return r
}

// Next asks like an interval-poll with cursor and returns the body and id
// of the message it gets, or "" and the cursor.
func Next(t testing.TB, s pushstore.Store, key string, cursor pushstore.MessageID) (string, pushstore.MessageID) {
	t.Helper()
	r, err := s.Subscribe(key, pushstore.SubscribeRequest{Cursor: cursor, HasCursor: true, Create: true})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if r.Message == nil {
		return "", cursor
	}
	return string(r.Message.Body), r.Message.ID
}

// Await waits (up to 10 s) for a subscription to be sent something and
// returns what: a message's body, or the end.
func Await(t testing.TB, sub pushstore.Subscription) (string, pushstore.End) {
	t.Helper()
	select {
	case <-sub.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the subscription was sent nothing within 10 s")
	}
	ds, end := sub.Take(nil)
	if len(ds) > 0 {
		return string(ds[0].Message.Body), end
	}
	return "", end
}

// AwaitN waits (up to 10 s for each batch) until an open subscription has
// been sent n deliveries, and returns them; it fails the test if the
// subscription ends or stalls first.
func AwaitN(t testing.TB, sub pushstore.Subscription, n int) []pushstore.Delivery {
	t.Helper()
	var got []pushstore.Delivery
	for len(got) < n {
		select {
		case <-sub.Ready():
		case <-time.After(10 * time.Second):
			t.Fatalf("got %d of %d deliveries, then nothing for 10 s", len(got), n)
		}
		ds, end := sub.Take(nil)
		got = append(got, ds...)
		if end != pushstore.Open {
			t.Fatalf("the subscription ended %v after %d of %d deliveries", end, len(got), n)
		}
		sub.Sent()
	}
	return got
}

// Bodies returns the deliveries' message bodies.
func Bodies(ds []pushstore.Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Message.Body)
	}
	return out
}

func idsGrow(t *testing.T, h *Harness) {
	s := h.Store
	var ids []pushstore.MessageID
	for range 3 {
		ids = append(ids, Publish(t, s, "/a", "x", Pub).ID)
	}
	h.Advance(-10 * time.Second) // the clock goes back
	ids = append(ids, Publish(t, s, "/a", "x", Pub).ID)
	h.Advance(20 * time.Second)
	ids = append(ids, Publish(t, s, "/a", "x", Pub).ID)
	for i := 1; i < len(ids); i++ {
		if !ids[i].After(ids[i-1]) {
			t.Fatalf("ids %v: %v is not after %v", ids, ids[i], ids[i-1])
		}
		if ids[i].Time == ids[i-1].Time && ids[i].Tag != ids[i-1].Tag+1 {
			t.Fatalf("ids %v: tags of one second must count up by one", ids)
		}
	}
	if ids[3].Time != ids[2].Time || ids[3].Tag != ids[2].Tag+1 {
		t.Fatalf("ids %v: after the clock went back, the next id must be the last + 1 tag", ids)
	}
	if ids[4].Time <= ids[3].Time || ids[4].Tag != 0 {
		t.Fatalf("ids %v: ten seconds on, the id must be a new second's first", ids)
	}
}

func idsGrowUnstored(t *testing.T, h *Harness) {
	off := Pub
	off.StoreMessages = false
	a := Publish(t, h.Store, "/a", "x", off).ID
	b := Publish(t, h.Store, "/a", "y", off).ID
	if !b.After(a) {
		t.Fatalf("second id %v not after first %v", b, a)
	}
}

func cursorTraversal(t *testing.T, h *Harness) {
	s := h.Store
	for i := range 5 {
		Publish(t, s, "/c", fmt.Sprint(i), Pub)
		if i == 2 {
			h.Advance(time.Second)
		}
	}
	var got []string
	cur := pushstore.MessageID{}
	for range 10 { // a store that answers the same message again stops here
		body, id := Next(t, s, "/c", cur)
		if body == "" {
			break
		}
		got = append(got, body)
		cur = id
	}
	if fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("traversal = %v", got)
	}
	// A cursor older than everything stored gets the oldest message.
	if body, _ := Next(t, s, "/c", pushstore.MessageID{Time: 5}); body != "0" {
		t.Fatalf("old cursor got %q", body)
	}
	// A cursor from the future waits.
	if body, _ := Next(t, s, "/c", pushstore.MessageID{Time: 1 << 40}); body != "" {
		t.Fatalf("future cursor got %q", body)
	}
}

func bufferRules(t *testing.T, h *Harness) {
	tests := []struct {
		name    string
		opts    func(*pushstore.PublishOptions)
		publish int
		want    int // messages left
	}{
		{"max trims oldest", func(o *pushstore.PublishOptions) { o.MaxBufferLength = 3 }, 5, 3},
		{"store off keeps nothing", func(o *pushstore.PublishOptions) { o.StoreMessages = false }, 5, 0},
		{"recipients rule waits for receipts", func(o *pushstore.PublishOptions) { o.MinRecipients = 1 }, 5, 5},
		{"min equals max", func(o *pushstore.PublishOptions) { o.MinBufferLength, o.MaxBufferLength = 2, 2 }, 5, 2},
		{"buffer of 0 stores nothing", func(o *pushstore.PublishOptions) { o.MinBufferLength, o.MaxBufferLength = 0, 0 }, 5, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := fmt.Sprint("/b", i)
			o := Pub
			tt.opts(&o)
			for i := range tt.publish {
				Publish(t, h.Store, key, fmt.Sprint(i), o)
			}
			info, _ := h.Store.Info(key)
			if info.Messages != tt.want {
				t.Fatalf("messages = %d, want %d", info.Messages, tt.want)
			}
		})
	}
}

func recipientRules(t *testing.T, h *Harness) {
	s := h.Store
	o := Pub
	o.MinRecipients = 2
	o.MinBufferLength = 1
	for i := range 3 {
		Publish(t, s, "/r", fmt.Sprint(i), o)
	}
	// Two receipts of the oldest remove it; the newest is protected by min.
	Next(t, s, "/r", pushstore.MessageID{})
	if info, _ := s.Info("/r"); info.Messages != 3 {
		t.Fatalf("after one receipt: %d", info.Messages)
	}
	Next(t, s, "/r", pushstore.MessageID{})
	if info, _ := s.Info("/r"); info.Messages != 2 {
		t.Fatalf("after two receipts: %d", info.Messages)
	}

	o2 := Pub
	o2.DeleteOldestReceived = true
	o2.MinBufferLength = 2
	for i := range 3 {
		Publish(t, s, "/d", fmt.Sprint(i), o2)
	}
	Next(t, s, "/d", pushstore.MessageID{}) // oldest delivered: removed (3 > min 2)
	Next(t, s, "/d", pushstore.MessageID{}) // oldest delivered: kept (2 = min)
	if info, _ := s.Info("/d"); info.Messages != 2 {
		t.Fatalf("delete_oldest: %d messages, want 2", info.Messages)
	}
}

// oneShotCounts: a multiplexed one-shot subscription (long-poll) or
// interval-poll whose channels both have a message after the cursor is
// answered with the earlier, and only that one counts as received: the
// other channel's, under min_message_recipients 1, stays for the next
// subscriber (the Redis store counted both, and removed one nobody got).
func oneShotCounts(t *testing.T, h *Harness) {
	s := h.Store
	o := Pub
	o.MinRecipients = 1
	o.MinBufferLength = 0
	for _, req := range []pushstore.FollowRequest{{OneShot: true}, {NoWait: true}} {
		a, b := fmt.Sprint("/oa", req.NoWait), fmt.Sprint("/ob", req.NoWait)
		Publish(t, s, a, "a1", o)
		Publish(t, s, b, "b1", o)
		Publish(t, s, b, "b2", o)
		req.Start = pushstore.Start{At: 1}
		sub, err := s.Follow([]string{a, b}, req)
		if err != nil || sub == nil {
			t.Fatalf("%+v: %v, %v", req, sub, err)
		}
		got, _ := Await(t, sub)
		if got != "a1" {
			t.Fatalf("%+v answered %q, want a1", req, got)
		}
		if info, _ := s.Info(a); info.Messages != 0 {
			t.Errorf("%+v: %s holds %d, want a1 received and removed", req, a, info.Messages)
		}
		if info, _ := s.Info(b); info.Messages != 2 {
			t.Errorf("%+v: %s holds %d, want b1 and b2, sent to nobody", req, b, info.Messages)
		}
	}
}

// refusedStream: a stream on several channels refused by a later one (not
// found, or a conflict) counts nothing of the earlier ones' backlogs, so
// min_message_recipients 1 removes nothing; the next stream gets it all.
func refusedStream(t *testing.T, h *Harness) {
	s := h.Store
	o := Pub
	o.MinRecipients = 1
	o.MinBufferLength = 0
	Publish(t, s, "/ra", "a1", o)
	Publish(t, s, "/ra", "a2", o)
	Publish(t, s, "/rb", "b1", o)
	busy, err := s.Follow([]string{"/rc"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Cancel()
	delivered := s.Counters().Delivered
	for _, tc := range []struct {
		keys []string
		want error
	}{
		{[]string{"/ra", "/rb", "/missing"}, pushstore.ErrChannelNotFound},
		{[]string{"/ra", "/rb", "/rc"}, pushstore.ErrConflict},
	} {
		sub, err := s.Follow(tc.keys, pushstore.FollowRequest{QueueBytes: 1 << 20, Concurrency: pushstore.First})
		if err != tc.want {
			if sub != nil {
				sub.Cancel()
			}
			t.Fatalf("follow %v: %v, want %v", tc.keys, err, tc.want)
		}
		a, _ := s.Info("/ra")
		b, _ := s.Info("/rb")
		if a.Messages != 2 || b.Messages != 1 || s.Counters().Delivered != delivered {
			t.Fatalf("after the stream refused (%v): /ra holds %d, /rb %d, %d delivered; want 2, 1, %d",
				tc.want, a.Messages, b.Messages, s.Counters().Delivered, delivered)
		}
	}
	sub, err := s.Follow([]string{"/ra", "/rb"}, pushstore.FollowRequest{QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	if got := Bodies(AwaitN(t, sub, 3)); fmt.Sprint(got) != "[a1 a2 b1]" {
		t.Fatalf("the next stream got %q, want a1 a2 b1", got)
	}
	a, _ := s.Info("/ra")
	b, _ := s.Info("/rb")
	if a.Messages != 0 || b.Messages != 0 {
		t.Fatalf("after it: /ra holds %d, /rb %d; want both received and removed", a.Messages, b.Messages)
	}
}

// channelNamedTwice: a stream naming one channel twice gets each message
// once per position (as nchan), and with concurrency first or last, or a
// subscriber limit of 1, it neither refuses nor displaces itself.
func channelNamedTwice(t *testing.T, h *Harness) {
	s := h.Store
	for _, req := range []pushstore.FollowRequest{
		{Concurrency: pushstore.First}, {Concurrency: pushstore.Last}, {MaxWaiters: 1},
	} {
		key := fmt.Sprintf("/twice%d-%d", req.Concurrency, req.MaxWaiters)
		req.Create, req.QueueBytes = true, 1<<20
		sub, err := s.Follow([]string{key, "/other", key}, req)
		if err != nil {
			t.Fatalf("%+v: %v", req, err)
		}
		Publish(t, s, key, "m", Pub)
		var channels []int
		for _, d := range AwaitN(t, sub, 2) {
			channels = append(channels, d.Channel)
		}
		sub.Cancel()
		if fmt.Sprint(channels) != "[0 2]" {
			t.Fatalf("%+v: the message came at positions %v, want [0 2]", req, channels)
		}
	}
}

// shorterChannelTimeout: a channel made by a subscriber (the default
// channel_timeout, an hour) that a publisher location then gives 10 s goes
// 10 s after its last use, not an hour after (the memory store had queued
// it for removal at the hour, and kept it till then).
func shorterChannelTimeout(t *testing.T, h *Harness) {
	s := h.Store
	if _, err := s.Subscribe("/short", pushstore.SubscribeRequest{Create: true}); err != nil {
		t.Fatal(err)
	}
	h.Advance(time.Second)
	if _, err := s.Touch("/short", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	h.Advance(30 * time.Second)
	h.Sweep()
	if _, err := s.Info("/short"); err != pushstore.ErrChannelNotFound {
		t.Fatalf("30 s after its last use, with channel_timeout 10 s: %v, want ErrChannelNotFound", err)
	}
}

func expiryAndChannelTimeout(t *testing.T, h *Harness) {
	s := h.Store
	o := Pub
	o.MessageTimeout = 10 * time.Second
	o.ChannelTimeout = 30 * time.Second
	Publish(t, s, "/e", "old", o)
	h.Advance(5 * time.Second)
	Publish(t, s, "/e", "new", o)
	h.Advance(6 * time.Second) // "old" expired
	if body, _ := Next(t, s, "/e", pushstore.MessageID{}); body != "new" {
		t.Fatalf("after expiry got %q, want new", body)
	}
	if info, _ := s.Info("/e"); info.Messages != 1 {
		t.Fatalf("expired message still counted: %d", info.Messages)
	}
	h.Advance(5 * time.Second) // all expired, channel idle since the GET
	h.Sweep()
	if _, err := s.Info("/e"); err != nil {
		t.Fatalf("channel gone before its channel_timeout: %v", err)
	}
	h.Advance(30 * time.Second)
	h.Sweep()
	if _, err := s.Info("/e"); err != pushstore.ErrChannelNotFound {
		t.Fatalf("channel still there after channel_timeout: %v", err)
	}
	if c := s.Counters(); c.Expired < 2 {
		t.Fatalf("expired counter %d, want 2 or more", c.Expired)
	}
}

func park(t *testing.T, s pushstore.Store, key string, req pushstore.SubscribeRequest) (pushstore.Subscription, error) {
	t.Helper()
	req.Create, req.Wait = true, true
	r, err := s.Subscribe(key, req)
	if err == nil && r.Sub == nil {
		t.Fatalf("subscribe answered %+v, want a subscription", r)
	}
	return r.Sub, err
}

func subscriptions(t *testing.T, h *Harness) {
	s := h.Store
	s1, _ := park(t, s, "/w", pushstore.SubscribeRequest{})
	s2, _ := park(t, s, "/w", pushstore.SubscribeRequest{})
	if _, err := park(t, s, "/w", pushstore.SubscribeRequest{MaxWaiters: 2}); err != pushstore.ErrTooManySubscribers {
		t.Fatalf("max subscribers: err = %v", err)
	}
	if _, err := park(t, s, "/w", pushstore.SubscribeRequest{Concurrency: pushstore.First}); err != pushstore.ErrConflict {
		t.Fatalf("first: err = %v", err)
	}
	res := Publish(t, s, "/w", "hi", Pub)
	if res.Info.Subscribers != 2 || res.Delivered != 2 {
		t.Fatalf("publish result %+v", res)
	}
	for _, sub := range []pushstore.Subscription{s1, s2} {
		if body, end := Await(t, sub); body != "hi" || end != pushstore.Done {
			t.Fatalf("sent %q, %v", body, end)
		}
	}
	// last displaces every current subscriber.
	cur := pushstore.SubscribeRequest{Cursor: res.ID, HasCursor: true}
	s3, _ := park(t, s, "/w", cur)
	cur.Concurrency = pushstore.Last
	s4, _ := park(t, s, "/w", cur)
	if _, end := Await(t, s3); end != pushstore.Displaced {
		t.Fatalf("displaced subscriber ended %v", end)
	}
	info, err := s.Delete("/w")
	if err != nil || info.Subscribers != 1 {
		t.Fatalf("delete info %+v, %v", info, err)
	}
	if _, end := Await(t, s4); end != pushstore.Deleted {
		t.Fatalf("deleted subscriber ended %v", end)
	}
	// A cancelled subscription is no longer counted, and Cancel may be
	// called twice.
	s5, _ := park(t, s, "/w", pushstore.SubscribeRequest{})
	s5.Cancel()
	if info, _ := s.Info("/w"); info.Subscribers != 0 {
		t.Fatalf("cancelled subscription still counted: %+v", info)
	}
	s5.Cancel()
	// A delivery before the cancel stands.
	s6, _ := park(t, s, "/w", pushstore.SubscribeRequest{})
	Publish(t, s, "/w", "late", Pub)
	Await(t, s6) // wait for it: on some stores it travels through a notification
	s6.Cancel()
	if ds, end := s6.Take(nil); len(ds) != 0 || end != pushstore.Done {
		t.Fatalf("take after the message was taken: %v %v", ds, end)
	}
}

func authorizedAndNewest(t *testing.T, h *Harness) {
	s := h.Store
	if _, err := s.Subscribe("/x", pushstore.SubscribeRequest{}); err != pushstore.ErrChannelNotFound {
		t.Fatalf("err = %v", err)
	}
	Publish(t, s, "/x", "a", Pub)
	r, _ := s.Subscribe("/x", pushstore.SubscribeRequest{Start: pushstore.Start{Newest: true}})
	if r.Message != nil {
		t.Fatalf("newest start got stored message %q", r.Message.Body)
	}
	r, _ = s.Subscribe("/x", pushstore.SubscribeRequest{})
	if r.Message == nil || string(r.Message.Body) != "a" {
		t.Fatal("oldest start did not get the stored message")
	}
}

func releaseAll(t *testing.T, h *Harness) {
	run, ok := h.Store.(pushstore.Runner)
	if !ok {
		t.Skip("the store has no lifecycle")
	}
	sub, _ := park(t, h.Store, "/s", pushstore.SubscribeRequest{})
	if n := run.ReleaseAll(); n != 1 {
		t.Fatalf("released %d", n)
	}
	if _, end := Await(t, sub); end != pushstore.Shutdown {
		t.Fatalf("ended %v", end)
	}
	late, _ := park(t, h.Store, "/s", pushstore.SubscribeRequest{})
	if _, end := Await(t, late); end != pushstore.Shutdown {
		t.Fatalf("a subscription after the release ended %v", end)
	}
}

// concurrentPublishers drives the store from many goroutines (run with
// -race): every subscriber that follows its cursor sees every message
// once, in the same order.
func concurrentPublishers(t *testing.T, h *Harness) {
	s := h.Store
	o := Pub
	o.MaxBufferLength = 1000
	const pubs, per, subs = 4, 100, 8
	var wg sync.WaitGroup
	results := make([][]string, subs)
	for i := range subs {
		wg.Go(func() {
			cur := pushstore.MessageID{}
			for len(results[i]) < pubs*per {
				r, err := s.Subscribe("/n", pushstore.SubscribeRequest{Cursor: cur, HasCursor: true, Create: true, Wait: true})
				if err != nil {
					t.Error(err)
					return
				}
				m := r.Message
				if m == nil {
					select {
					case <-r.Sub.Ready():
					case <-time.After(10 * time.Second):
						t.Error("no message within 10 s")
						return
					}
					ds, _ := r.Sub.Take(nil)
					if len(ds) == 0 {
						continue // a retry: ask again
					}
					m = ds[0].Message
				}
				results[i] = append(results[i], string(m.Body))
				cur = m.ID
			}
		})
	}
	var pwg sync.WaitGroup
	for p := range pubs {
		pwg.Go(func() {
			for j := range per {
				if _, err := s.Publish("/n", &pushstore.Message{Body: fmt.Appendf(nil, "%d-%d", p, j)}, o); err != nil {
					t.Error(err)
				}
			}
		})
	}
	pwg.Wait()
	wg.Wait()
	OnceInOneOrder(t, results, pubs*per)
}

// OnceInOneOrder fails unless every subscriber's bodies are total distinct
// messages, none twice, all in the first subscriber's order.
func OnceInOneOrder(t testing.TB, results [][]string, total int) {
	t.Helper()
	for i, got := range results {
		seen := map[string]bool{}
		for _, b := range got {
			if seen[b] {
				t.Fatalf("subscriber %d got %s twice", i, b)
			}
			seen[b] = true
		}
		if len(seen) != total {
			t.Fatalf("subscriber %d got %d distinct of %d", i, len(seen), total)
		}
		if !slices.Equal(got, results[0]) {
			t.Fatalf("subscriber %d saw a different order", i)
		}
	}
}

// idsAfterDelete deletes a channel in the second of its last message and
// publishes again: the new channel's ids continue after the old one's.
func idsAfterDelete(t *testing.T, h *Harness) {
	s := h.Store
	var last pushstore.MessageID
	for i := range 5 {
		last = Publish(t, s, "/i", fmt.Sprint("old", i), Pub).ID
	}
	if _, err := s.Delete("/i"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if id := Publish(t, s, "/i", fmt.Sprint("new", i), Pub).ID; !id.After(last) {
			t.Fatalf("new message %d has id %v, not after the old channel's %v", i, id, last)
		}
	}
	if body, _ := Next(t, s, "/i", last); body != "new0" {
		t.Fatalf("a subscriber with the old cursor got %q, want new0", body)
	}
}
