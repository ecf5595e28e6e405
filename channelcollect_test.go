package caddypush

import (
	"fmt"
	"testing"
	"time"
)

// TestFullStoreRefusesWithoutScanning fills a store with one-message
// channels whose messages do not expire yet, then has it refuse new
// channels and new messages: each refusal may only look at what is due
// (nothing here), not at every channel. The store used to collect with a
// scan of the whole store, up to three times per 507, so a full store
// answered slowly and slowed every other channel with it.
func TestFullStoreRefusesWithoutScanning(t *testing.T) {
	clk := newFakeClock()
	const channels = 2000
	per := int64(channelOverhead + len("/c0000") + messageOverhead + 10 + len("text/plain"))
	s := NewMemoryStore(channels*per, clk.Now)
	for i := range channels {
		mustPublish(t, s, fmt.Sprintf("/c%04d", i), "0123456789", defaultPub)
	}
	if _, err := s.Publish("/new", []byte("x"), "", defaultPub); err != ErrInsufficientStorage {
		t.Fatalf("publish to a new channel in a full store: %v", err)
	}
	s.Sweep() // the channels queued by the PUT-less creation are now out of date
	before := s.visits.Load()
	for i := range 100 {
		if _, err := s.Publish(fmt.Sprintf("/new%d", i), []byte("x"), "", defaultPub); err != ErrInsufficientStorage {
			t.Fatalf("publish %d to a new channel: %v", i, err)
		}
		if _, err := s.Publish("/c0001", []byte("0123456789abcdef"), "", defaultPub); err != ErrInsufficientStorage {
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
	if st, _ := s.ChannelStatOf("/mixed"); st.Messages != 1 {
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

// TestIDsContinueAcrossIncarnations: over HTTP, on both stores, a channel
// deleted and published to again within one second (and, on Redis, one
// whose keys Redis lost) continues its ids, so a subscriber holding the
// old channel's cursor gets the new messages instead of waiting past them.
func TestIDsContinueAcrossIncarnations(t *testing.T) {
	forEachStore(t, testIDsContinueAcrossIncarnations)
}

func testIDsContinueAcrossIncarnations(t *testing.T) {
	startMain(t)
	ends := map[string]func(ch string){
		"delete": func(ch string) {
			if r := do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil); r.status != 200 {
				t.Fatalf("DELETE: %d", r.status)
			}
		},
	}
	if rs, ok := current.store.(*RedisStore); ok {
		ends["keys lost"] = func(ch string) { // as a Redis restarted without its data
			if err := rs.client.Del(t.Context(), rs.keys("/"+ch)...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			for try := 0; ; try++ {
				ch := chanName(t, fmt.Sprint(try))
				for i := range 5 {
					publish(t, "/pub", ch, fmt.Sprint("old", i))
				}
				var old cursor
				for range 5 {
					old = do(t, h1Client, "GET", base+"/sub?id="+ch, nil, old.headers()...).cursor()
				}
				end(ch)
				for i := range 3 {
					publish(t, "/pub", ch, fmt.Sprint("new", i))
				}
				first := do(t, h1Client, "GET", base+"/sub?id="+ch, nil)
				if first.header.Get("Last-Modified") != old.lastModified && try < 20 {
					continue // the second turned: try again within one
				}
				if first.body != "new0" {
					t.Fatalf("the new channel's first message is %q", first.body)
				}
				r := do(t, h1Client, "GET", base+"/poll?id="+ch, nil, old.headers()...)
				if r.status != 200 || r.body != "new0" {
					t.Fatalf("with the old channel's cursor %+v: %d %q, want new0 (its id %+v)",
						old, r.status, r.body, first.cursor())
				}
				return
			}
		})
	}
}
