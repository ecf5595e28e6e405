package pushstore

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests look into the memory store's accounting and collection; the
// behaviour every store shares is the conformance suite's
// (conformance_test.go).

// fakeClock is an injected clock; tests move it by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.t
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.t = f.t.Add(d)
	f.mu.Unlock()
}

var defaultPub = PublishOptions{
	StoreMessages: true, MaxBufferLength: 10, MinBufferLength: 1,
	MessageTimeout: time.Hour, ChannelTimeout: time.Hour,
}

func mustPublish(t *testing.T, s *MemoryStore, key, body string, o PublishOptions) PublishResult {
	t.Helper()
	r, err := s.Publish(key, &Message{Body: []byte(body), ContentType: "text/plain"}, o)
	if err != nil {
		t.Fatalf("publish %q: %v", body, err)
	}
	return r
}

// next answers an interval-style lookup for cursor and returns the body or "".
func next(t *testing.T, s *MemoryStore, key string, cursor MessageID) (string, MessageID) {
	t.Helper()
	r, err := s.Subscribe(key, SubscribeRequest{Cursor: cursor, HasCursor: true, Create: true})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if r.Message == nil {
		return "", cursor
	}
	return string(r.Message.Body), r.Message.ID
}

// heldBytes recounts what a store holds from its channels, as the
// accounting should have it.
func heldBytes(s *MemoryStore) int64 {
	var n int64
	for _, c := range s.snapshot() {
		c.mu.Lock()
		if !c.deleted {
			n += int64(len(c.key)) + ChannelOverhead
			for _, m := range c.msgs {
				n += int64(len(m.Body)+len(m.ContentType)) + MessageOverhead
			}
		}
		c.mu.Unlock()
	}
	return n
}

// TestAccountingFollowsBufferRules publishes under each buffer rule and
// recounts: the budget's count is what the store holds.
func TestAccountingFollowsBufferRules(t *testing.T) {
	for i, o := range []PublishOptions{
		{StoreMessages: true, MaxBufferLength: 3, MinBufferLength: 1},
		{StoreMessages: false, MaxBufferLength: 10},
		{StoreMessages: true, MaxBufferLength: 10, MinRecipients: 1, MinBufferLength: 1},
		{StoreMessages: true, MaxBufferLength: 2, MinBufferLength: 2},
		{StoreMessages: true},
	} {
		s := NewMemoryStore(1<<20, newFakeClock().Now)
		o.ChannelTimeout = time.Hour
		for j := range 5 {
			mustPublish(t, s, "/b", fmt.Sprint(j), o)
		}
		next(t, s, "/b", MessageID{})
		if used, held := s.UsedBytes(), heldBytes(s); used != held {
			t.Fatalf("rules %d: accounting %d bytes, store holds %d", i, used, held)
		}
	}
}

func TestMemoryBudget(t *testing.T) {
	clk := newFakeClock()
	budget := int64(ChannelOverhead + 2 + 2*(MessageOverhead+100+10))
	s := NewMemoryStore(budget, clk.Now)
	o := defaultPub
	o.MessageTimeout = time.Minute
	body := string(make([]byte, 100))
	mustPublish(t, s, "/m", body, o)
	mustPublish(t, s, "/m", body, o)
	if _, err := s.Publish("/m", &Message{Body: []byte(body), ContentType: "text/plain"}, o); err != ErrInsufficientStorage {
		t.Fatalf("third publish: err = %v, want ErrInsufficientStorage", err)
	}
	if info, _ := s.Info("/m"); info.Messages != 2 {
		t.Fatalf("a refused publish evicted stored messages: %d left", info.Messages)
	}
	// With a full buffer the oldest message makes room for the newest.
	o2 := o
	o2.MaxBufferLength = 2
	mustPublish(t, s, "/m", body, o2)
	// After expiry the memory comes back.
	clk.Advance(2 * time.Minute)
	mustPublish(t, s, "/m", body, o)
	if used := s.UsedBytes(); used > budget {
		t.Fatalf("used %d > budget %d", used, budget)
	}
}

// TestMemoryCapUnderConcurrentLargePublishes publishes 64 KiB bodies to 50
// channels from 8 goroutines into a 2 MiB budget while a sampler watches the
// count: it never exceeds the budget, refusals are ErrInsufficientStorage,
// and at the end the count equals the bytes really held.
func TestMemoryCapUnderConcurrentLargePublishes(t *testing.T) {
	const budget = 2 << 20
	s := NewMemoryStore(budget, nil)
	o := defaultPub
	o.MaxBufferLength = 5
	body := make([]byte, 64<<10)
	var refused, stored atomic.Int64
	var over atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if u := s.UsedBytes(); u > budget {
				over.Store(u)
			}
			runtime.Gosched()
		}
	}()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_, err := s.Publish(fmt.Sprintf("/big%d", (g*200+i)%50), &Message{Body: body, ContentType: "application/octet-stream"}, o)
				switch err {
				case nil:
					stored.Add(1)
				case ErrInsufficientStorage:
					refused.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	if u := over.Load(); u != 0 {
		t.Fatalf("accounting reached %d bytes, over the %d budget", u, budget)
	}
	if refused.Load() == 0 || stored.Load() == 0 {
		t.Fatalf("stored %d, refused %d: the budget was not exercised", stored.Load(), refused.Load())
	}
	if used, held := s.UsedBytes(), heldBytes(s); used != held {
		t.Fatalf("accounting says %d bytes, the store holds %d", used, held)
	}
	t.Logf("stored %d, refused %d (507)", stored.Load(), refused.Load())
}

// TestFullStoreRefusesWithoutScanning fills a store with one-message
// channels whose messages do not expire yet, then has it refuse new
// channels and new messages: each refusal may only look at what is due
// (nothing here), not at every channel. The store used to collect with a
// scan of the whole store, up to three times per 507, so a full store
// answered slowly and slowed every other channel with it.
func TestFullStoreRefusesWithoutScanning(t *testing.T) {
	clk := newFakeClock()
	const channels = 2000
	per := int64(ChannelOverhead + len("/c0000") + MessageOverhead + 10 + len("text/plain"))
	s := NewMemoryStore(channels*per, clk.Now)
	for i := range channels {
		mustPublish(t, s, fmt.Sprintf("/c%04d", i), "0123456789", defaultPub)
	}
	if _, err := s.Publish("/new", &Message{Body: []byte("x")}, defaultPub); err != ErrInsufficientStorage {
		t.Fatalf("publish to a new channel in a full store: %v", err)
	}
	s.Sweep() // the channels queued by the PUT-less creation are now out of date
	before := s.visits.Load()
	for i := range 100 {
		if _, err := s.Publish(fmt.Sprintf("/new%d", i), &Message{Body: []byte("x")}, defaultPub); err != ErrInsufficientStorage {
			t.Fatalf("publish %d to a new channel: %v", i, err)
		}
		if _, err := s.Publish("/c0001", &Message{Body: []byte("0123456789abcdef")}, defaultPub); err != ErrInsufficientStorage {
			t.Fatalf("publish %d to a full channel: %v", i, err)
		}
		if _, err := s.Touch(fmt.Sprintf("/put%d", i), time.Hour); err != ErrInsufficientStorage {
			t.Fatalf("PUT %d: %v", i, err)
		}
	}
	if n := s.visits.Load() - before; n > 0 {
		t.Fatalf("300 refusals looked at %d channels; with nothing due they must look at none", n)
	}

	// What is due is still found: once the messages expire, a publication
	// makes room for itself by collecting them.
	clk.Advance(defaultPub.MessageTimeout)
	mustPublish(t, s, "/after", "x", defaultPub)
	if n := s.visits.Load() - before; n < channels {
		t.Fatalf("the collection after expiry looked at %d channels, want every expired one (%d)", n, channels)
	}
	if st, _ := s.Stats(); st.Messages != 1 {
		t.Fatalf("%d messages left after expiry, want 1", st.Messages)
	}
}

// TestCollectionIndexFollowsUse checks the index against what a full scan
// would do: an idle channel goes at the end of its channel_timeout counted
// from its last use, however often it was used; messages expire in time
// order whatever order their timeouts were given in; memory pressure takes
// every idle channel at once.
func TestCollectionIndexFollowsUse(t *testing.T) {
	clk := newFakeClock()
	s := NewMemoryStore(1<<20, clk.Now)
	short := defaultPub
	short.MessageTimeout, short.ChannelTimeout = 5*time.Second, 10*time.Second
	long := short
	long.MessageTimeout = 20 * time.Second
	mustPublish(t, s, "/mixed", "long", long)
	mustPublish(t, s, "/mixed", "short", short) // expires first, though published last
	if _, err := s.Touch("/idle", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second)
	s.Sweep()
	if st, _ := s.Channel("/mixed"); st.Messages != 1 {
		t.Fatalf("/mixed holds %d messages 6 s on, want 1 (the short one expired)", st.Messages)
	}
	if _, err := s.Touch("/idle", 10*time.Second); err != nil { // a use: its timeout starts again
		t.Fatal(err)
	}
	clk.Advance(6 * time.Second) // 12 s after the PUT, 6 s after the use
	s.Sweep()
	if _, err := s.Info("/idle"); err != nil {
		t.Fatalf("/idle removed 6 s after its last use: %v", err)
	}
	clk.Advance(11 * time.Second) // "long" expired; /idle unused for 11 s
	if n := s.Sweep(); n != 2 {
		t.Fatalf("swept %d channels, want /idle and /mixed (idle once its last message expired, "+
			"and unused for longer than its channel_timeout)", n)
	}
	if _, err := s.Info("/idle"); err == nil {
		t.Fatal("/idle still there 11 s after its last use")
	}

	for i := range 5 {
		if _, err := s.Touch(fmt.Sprint("/p", i), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.collect(true); n != 5 {
		t.Fatalf("memory pressure removed %d idle channels, want 5", n)
	}
	if s.UsedBytes() != 0 {
		t.Fatalf("%d bytes still counted with the store empty", s.UsedBytes())
	}
}

// TestIDsNeverGoBackwardsAcrossIncarnations deletes a channel, lets one
// time out and one be removed under memory pressure, each in the second of
// its last message, and makes each again at once: the new channel's ids
// continue after the old one's, so a subscriber still holding the old
// cursor gets every new message.
func TestIDsNeverGoBackwardsAcrossIncarnations(t *testing.T) {
	clk := newFakeClock()
	s := NewMemoryStore(1<<20, clk.Now)
	off := defaultPub
	off.StoreMessages = false
	off.ChannelTimeout = 100 * time.Millisecond
	removals := map[string]func(key string){
		"delete": func(key string) {
			if _, err := s.Delete(key); err != nil {
				t.Fatal(err)
			}
		},
		"channel timeout": func(key string) {
			clk.Advance(200 * time.Millisecond) // still the same second
			s.Sweep()
		},
		"memory pressure": func(key string) { s.collect(true) },
	}
	for name, remove := range removals {
		key := "/" + name
		o := defaultPub
		if name != "delete" {
			o = off // nothing stored: the channel can go while idle
		}
		var last MessageID
		for i := range 5 {
			last = mustPublish(t, s, key, fmt.Sprint("old", i), o).ID
		}
		remove(key)
		if _, err := s.Info(key); err == nil {
			t.Fatalf("%s: channel still there", name)
		}
		for i := range 3 {
			id := mustPublish(t, s, key, fmt.Sprint("new", i), defaultPub).ID
			if !id.After(last) {
				t.Fatalf("%s: new message %d has id %v, not after the old channel's %v", name, i, id, last)
			}
		}
		if body, _ := next(t, s, key, last); body != "new0" {
			t.Fatalf("%s: a subscriber with the old cursor got %q, want new0", name, body)
		}
	}
	clk.Advance(time.Second)
	s.Sweep()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.tombs) != 0 {
		t.Fatalf("%d tombs kept after their second passed", len(s.tombs))
	}
}

// TestClockSteppedBackKeepsOtherChannelsSeconds: after a message on a,
// the clock steps back 5 s; b's messages, one a second, get their own
// seconds, as the clock gives them. A client of the push module's
// protocol that resumes with If-Modified-Since alone (the original
// document's Ruby client) can tell messages of different seconds apart
// only: had b's messages kept a's later second (a store-wide clamp, tried
// on 2026-11-29), each re-poll from that second's Last-Modified would be
// answered with the same message again until the clock caught up.
func TestClockSteppedBackKeepsOtherChannelsSeconds(t *testing.T) {
	clk := newFakeClock()
	s := NewMemoryStore(1<<20, clk.Now)
	a := mustPublish(t, s, "/a", "a1", defaultPub).ID
	clk.Advance(-5 * time.Second)
	b1 := mustPublish(t, s, "/b", "b1", defaultPub).ID
	clk.Advance(time.Second)
	b2 := mustPublish(t, s, "/b", "b2", defaultPub).ID
	if b1.Time != a.Time-5 || b2.Time != b1.Time+1 {
		t.Fatalf("a1 %v, then with the clock 5 s back b1 %v and a second later b2 %v: want the clock's seconds", a, b1, b2)
	}
}

// TestOneShotKeepsWhatWasCounted publishes on a multiplexed long-poll's
// first channel while it registers on its second, which has a stored
// message: the poll must not answer with one message while the other was
// counted as received (and, with min_message_recipients 1, removed).
func TestOneShotKeepsWhatWasCounted(t *testing.T) {
	keep := PublishOptions{StoreMessages: true, MaxBufferLength: 10, ChannelTimeout: time.Hour}
	rule := keep
	rule.MinRecipients = 1
	for _, tc := range []struct {
		name       string
		stored     []string // channel/body published before the poll
		wantAnswer string
		wantLeft   map[string]int // messages each channel still holds
	}{
		// b0 is stored: the poll, which looks at every channel before it
		// waits on any, is answered b0, and a1, published as it looks
		// at b, stays stored, uncounted, for the next poll.
		{"stored", []string{"g/b/b0"}, "b0", map[string]int{"g/a": 1, "g/b": 0}},
		// a has a0, the answer: the poll does not wait on a, and a1
		// stays stored, uncounted.
		{"backlog", []string{"g/a/a0", "g/b/b0"}, "a0", map[string]int{"g/a": 1, "g/b": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hook func()
			clockCalls := 0
			s := NewMemoryStore(1<<20, func() time.Time {
				clockCalls++
				if h := hook; h != nil {
					hook = nil
					h()
				}
				return time.Now()
			})
			for _, key := range []string{"g/a", "g/b"} {
				if _, err := s.Touch(key, time.Hour); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range tc.stored {
				if _, err := s.Publish(p[:3], &Message{Body: []byte(p[4:])}, rule); err != nil {
					t.Fatal(err)
				}
			}
			hook = func() { // the first channel's join reads the clock: arm the second's
				hook = func() {
					if _, err := s.Publish("g/a", &Message{Body: []byte("a1")}, rule); err != nil {
						t.Error(err)
					}
				}
			}
			sub, err := s.Follow([]string{"g/a", "g/b"}, FollowRequest{OneShot: true, HasCursor: true, Cursors: []MessageID{{}, {}}})
			if err != nil || sub == nil {
				t.Fatalf("follow: %v %v", sub, err)
			}
			ds, end := sub.Take(nil)
			sub.Cancel()
			if hook != nil {
				t.Fatalf("the publication during the second join did not run (%d clock reads)", clockCalls)
			}
			if len(ds) != 1 || end != Done || string(ds[0].Message.Body) != tc.wantAnswer {
				t.Fatalf("answered %d messages (end %d), want %q", len(ds), end, tc.wantAnswer)
			}
			for key, want := range tc.wantLeft {
				if info, _ := s.Info(key); info.Messages != want {
					t.Errorf("%s holds %d messages, want %d", key, info.Messages, want)
				}
			}
			if got := s.Counters().Delivered; got != 1 {
				t.Errorf("delivered counter %d, want 1", got)
			}
		})
	}
}
