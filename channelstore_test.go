package caddypush

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

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
	r, err := s.Publish(key, []byte(body), "text/plain", o)
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

func TestMessageIDsSameSecondAndClockBackwards(t *testing.T) {
	clk := newFakeClock()
	s := NewMemoryStore(1<<20, clk.Now)
	ids := []MessageID{}
	for range 3 {
		ids = append(ids, mustPublish(t, s, "/a", "x", defaultPub).ID)
	}
	clk.Advance(-10 * time.Second) // clock goes backwards
	ids = append(ids, mustPublish(t, s, "/a", "x", defaultPub).ID)
	clk.Advance(20 * time.Second)
	ids = append(ids, mustPublish(t, s, "/a", "x", defaultPub).ID)
	base := int64(1_700_000_000)
	want := []MessageID{{base, 0}, {base, 1}, {base, 2}, {base, 3}, {base + 10, 0}}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("ids = %v, want %v", ids, want)
		}
	}
}

func TestIDsNeverRepeatWhenNothingIsStored(t *testing.T) {
	s := NewMemoryStore(1<<20, newFakeClock().Now)
	off := defaultPub
	off.StoreMessages = false
	a := mustPublish(t, s, "/a", "x", off).ID
	b := mustPublish(t, s, "/a", "y", off).ID
	if !b.After(a) {
		t.Fatalf("second id %v not after first %v", b, a)
	}
}

func TestCursorTraversal(t *testing.T) {
	clk := newFakeClock()
	s := NewMemoryStore(1<<20, clk.Now)
	for i := range 5 {
		mustPublish(t, s, "/c", fmt.Sprint(i), defaultPub)
		if i == 2 {
			clk.Advance(time.Second)
		}
	}
	var got []string
	cur := MessageID{}
	for {
		body, id := next(t, s, "/c", cur)
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
	if body, _ := next(t, s, "/c", MessageID{Time: 5}); body != "0" {
		t.Fatalf("old cursor got %q", body)
	}
	// A cursor from the future waits.
	if body, _ := next(t, s, "/c", MessageID{Time: 1 << 40}); body != "" {
		t.Fatalf("future cursor got %q", body)
	}
}

func TestBufferRules(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(*PublishOptions)
		publish int
		want    int // messages left
	}{
		{"max trims oldest", func(o *PublishOptions) { o.MaxBufferLength = 3 }, 5, 3},
		{"store off keeps nothing", func(o *PublishOptions) { o.StoreMessages = false }, 5, 0},
		{"recipients rule waits for receipts", func(o *PublishOptions) { o.MinRecipients = 1 }, 5, 5},
		{"min equals max", func(o *PublishOptions) { o.MinBufferLength, o.MaxBufferLength = 2, 2 }, 5, 2},
		{"buffer of 0 stores nothing", func(o *PublishOptions) { o.MinBufferLength, o.MaxBufferLength = 0, 0 }, 5, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewMemoryStore(1<<20, newFakeClock().Now)
			o := defaultPub
			tt.opts(&o)
			for i := range tt.publish {
				mustPublish(t, s, "/b", fmt.Sprint(i), o)
			}
			info, _ := s.Info("/b")
			if info.Messages != tt.want {
				t.Fatalf("messages = %d, want %d", info.Messages, tt.want)
			}
			if used, held := s.UsedBytes(), heldBytes(s); used != held {
				t.Fatalf("accounting %d bytes, store holds %d", used, held)
			}
		})
	}
}

func TestMinRecipientsAndDeleteOldestAfterDelivery(t *testing.T) {
	s := NewMemoryStore(1<<20, newFakeClock().Now)
	o := defaultPub
	o.MinRecipients = 2
	o.MinBufferLength = 1
	for i := range 3 {
		mustPublish(t, s, "/r", fmt.Sprint(i), o)
	}
	// Two receipts of the oldest remove it; the newest is protected by min.
	next(t, s, "/r", MessageID{})
	if info, _ := s.Info("/r"); info.Messages != 3 {
		t.Fatalf("after one receipt: %d", info.Messages)
	}
	next(t, s, "/r", MessageID{})
	if info, _ := s.Info("/r"); info.Messages != 2 {
		t.Fatalf("after two receipts: %d", info.Messages)
	}

	s2 := NewMemoryStore(1<<20, newFakeClock().Now)
	o2 := defaultPub
	o2.DeleteOldestReceived = true
	o2.MinBufferLength = 2
	for i := range 3 {
		mustPublish(t, s2, "/d", fmt.Sprint(i), o2)
	}
	next(t, s2, "/d", MessageID{}) // oldest delivered: removed (3 > min 2)
	next(t, s2, "/d", MessageID{}) // oldest delivered: kept (2 = min)
	if info, _ := s2.Info("/d"); info.Messages != 2 {
		t.Fatalf("delete_oldest: %d messages, want 2", info.Messages)
	}
}

func TestStoreExpiryAndChannelTimeout(t *testing.T) {
	clk := newFakeClock()
	s := NewMemoryStore(1<<20, clk.Now)
	o := defaultPub
	o.MessageTimeout = 10 * time.Second
	o.ChannelTimeout = 30 * time.Second
	mustPublish(t, s, "/e", "old", o)
	clk.Advance(5 * time.Second)
	mustPublish(t, s, "/e", "new", o)
	clk.Advance(6 * time.Second) // "old" expired
	if body, _ := next(t, s, "/e", MessageID{}); body != "new" {
		t.Fatalf("after expiry got %q, want new", body)
	}
	if info, _ := s.Info("/e"); info.Messages != 1 {
		t.Fatalf("expired message still counted: %d", info.Messages)
	}
	clk.Advance(5 * time.Second) // all expired, channel idle since the GET
	if n := s.Sweep(); n != 0 {
		t.Fatalf("swept %d channels before channel_timeout", n)
	}
	clk.Advance(30 * time.Second)
	if n := s.Sweep(); n != 1 {
		t.Fatalf("swept %d channels, want 1", n)
	}
	if _, err := s.Info("/e"); err == nil {
		t.Fatal("channel still there after channel_timeout")
	}
	if s.UsedBytes() != 0 {
		t.Fatalf("used bytes %d after everything was removed", s.UsedBytes())
	}
}

func TestMemoryBudget(t *testing.T) {
	clk := newFakeClock()
	budget := int64(channelOverhead + 2 + 2*(messageOverhead+100+10))
	s := NewMemoryStore(budget, clk.Now)
	o := defaultPub
	o.MessageTimeout = time.Minute
	body := string(make([]byte, 100))
	mustPublish(t, s, "/m", body, o)
	mustPublish(t, s, "/m", body, o)
	if _, err := s.Publish("/m", []byte(body), "text/plain", o); err != ErrInsufficientStorage {
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

func TestWaitersBroadcastDeleteAndConcurrency(t *testing.T) {
	s := NewMemoryStore(1<<20, newFakeClock().Now)
	park := func(c Concurrency, max int) (*Waiter, error) {
		r, err := s.Subscribe("/w", SubscribeRequest{Create: true, Wait: true, Concurrency: c, MaxWaiters: max})
		return r.Waiter, err
	}
	w1, _ := park(Broadcast, 0)
	w2, _ := park(Broadcast, 0)
	if _, err := park(Broadcast, 2); err != ErrTooManySubscribers {
		t.Fatalf("max subscribers: err = %v", err)
	}
	if _, err := park(First, 0); err != ErrConflict {
		t.Fatalf("first: err = %v", err)
	}
	res := mustPublish(t, s, "/w", "hi", defaultPub)
	if res.Info.Subscribers != 2 || res.Delivered != 2 {
		t.Fatalf("publish result %+v", res)
	}
	for _, w := range []*Waiter{w1, w2} {
		if wk := <-w.C; wk.Reason != WakeMessage || string(wk.Message.Body) != "hi" {
			t.Fatalf("wake = %+v", wk)
		}
	}
	// last displaces every current waiter.
	w3, _ := s.Subscribe("/w", SubscribeRequest{Cursor: res.ID, HasCursor: true, Wait: true, Create: true})
	w4, _ := s.Subscribe("/w", SubscribeRequest{Cursor: res.ID, HasCursor: true, Wait: true, Create: true, Concurrency: Last})
	if wk := <-w3.Waiter.C; wk.Reason != WakeDisplaced {
		t.Fatalf("displaced waiter got %+v", wk)
	}
	info, err := s.Delete("/w")
	ok := err == nil
	if !ok || info.Subscribers != 1 {
		t.Fatalf("delete info %+v ok=%v", info, ok)
	}
	if wk := <-w4.Waiter.C; wk.Reason != WakeDeleted {
		t.Fatalf("deleted waiter got %+v", wk)
	}
	// A cancelled waiter is no longer counted.
	w5, _ := park(Broadcast, 0)
	s.Cancel(w5)
	if info, _ := s.Info("/w"); info.Subscribers != 0 {
		t.Fatalf("cancelled waiter still counted: %+v", info)
	}
	s.Cancel(w5) // idempotent
}

func TestAuthorizedOnlyAndStartNewest(t *testing.T) {
	s := NewMemoryStore(1<<20, newFakeClock().Now)
	if _, err := s.Subscribe("/x", SubscribeRequest{}); err != ErrChannelNotFound {
		t.Fatalf("err = %v", err)
	}
	mustPublish(t, s, "/x", "a", defaultPub)
	r, _ := s.Subscribe("/x", SubscribeRequest{StartNewest: true})
	if r.Message != nil {
		t.Fatalf("newest start got stored message %q", r.Message.Body)
	}
	r, _ = s.Subscribe("/x", SubscribeRequest{})
	if r.Message == nil || string(r.Message.Body) != "a" {
		t.Fatal("oldest start did not get the stored message")
	}
}

func TestReleaseAllOnShutdown(t *testing.T) {
	s := NewMemoryStore(1<<20, nil)
	r, _ := s.Subscribe("/s", SubscribeRequest{Create: true, Wait: true})
	if n := s.ReleaseAll(); n != 1 {
		t.Fatalf("released %d", n)
	}
	if wk := <-r.Waiter.C; wk.Reason != WakeShutdown {
		t.Fatalf("wake %+v", wk)
	}
	r, _ = s.Subscribe("/s", SubscribeRequest{Create: true, Wait: true})
	if wk := <-r.Waiter.C; wk.Reason != WakeShutdown {
		t.Fatalf("late waiter got %+v", wk)
	}
}

// TestConcurrentPublishersNoLossNoDup drives the store from many goroutines
// (run with -race): every subscriber sees every message once, in order.
func TestConcurrentPublishersNoLossNoDup(t *testing.T) {
	s := NewMemoryStore(64<<20, nil)
	o := defaultPub
	o.MaxBufferLength = 1000
	const pubs, per, subs = 4, 100, 8
	var wg sync.WaitGroup
	results := make([][]string, subs)
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cur := MessageID{}
			for len(results[i]) < pubs*per {
				r, err := s.Subscribe("/n", SubscribeRequest{Cursor: cur, HasCursor: true, Create: true, Wait: true})
				if err != nil {
					t.Error(err)
					return
				}
				m := r.Message
				if m == nil {
					wk := <-r.Waiter.C
					m = wk.Message
				}
				results[i] = append(results[i], string(m.Body))
				cur = m.ID
			}
		}()
	}
	var pwg sync.WaitGroup
	for p := range pubs {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for j := range per {
				if _, err := s.Publish("/n", fmt.Appendf(nil, "%d-%d", p, j), "", o); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	pwg.Wait()
	wg.Wait()
	for i, got := range results {
		seen := map[string]bool{}
		for _, b := range got {
			if seen[b] {
				t.Fatalf("subscriber %d got %s twice", i, b)
			}
			seen[b] = true
		}
		if len(seen) != pubs*per {
			t.Fatalf("subscriber %d got %d distinct", i, len(seen))
		}
		if fmt.Sprint(got) != fmt.Sprint(results[0]) {
			t.Fatalf("subscriber %d saw a different order", i)
		}
	}
}

func TestParseCursor(t *testing.T) {
	tests := []struct {
		ims, inm string
		want     MessageID
	}{
		{"", "", MessageID{}},
		{"Thu, 26 Nov 2026 06:06:17 GMT", "3", MessageID{1795673177, 3}},
		{"garbage", `"7"`, MessageID{0, 7}},
		{"", `W/"12"`, MessageID{0, 12}},
		{"", `5-gzip"`, MessageID{0, 5}},
		{"", `5"`, MessageID{0, 5}},
		{"", `"5-zstd"`, MessageID{0, 5}},
		{"", "abc", MessageID{}},
		{"", "5x", MessageID{}},
		{"", "-5", MessageID{}},
		{"", "99999999999999999999", MessageID{}},
		{"", `"5", "6"`, MessageID{}},
	}
	for _, tt := range tests {
		if got := ParseCursor(tt.ims, tt.inm); got != tt.want {
			t.Errorf("ParseCursor(%q, %q) = %v, want %v", tt.ims, tt.inm, got, tt.want)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add("Thu, 26 Nov 2026 06:06:17 GMT", "3")
	f.Add("", `W/"1"`)
	f.Add("Monday, 02-Jan-06 15:04:05 MST", `7-gzip"`)
	f.Fuzz(func(t *testing.T, ims, inm string) {
		id := ParseCursor(ims, inm)
		if id.Tag < 0 {
			t.Fatalf("negative tag %d", id.Tag)
		}
		// Whatever we emit must read back as itself.
		back := ParseCursor(id.LastModified(), id.Etag())
		if id.Time >= 0 && id.Time < 253402300800 && back != id {
			t.Fatalf("round trip %v -> %v", id, back)
		}
	})
}

func FuzzNegotiateInfo(f *testing.F) {
	f.Add("text/html, application/xml;q=0.9, */*;q=0.8")
	f.Add("TEXT/JSON ; charset=x,")
	f.Add(",,;;")
	f.Fuzz(func(t *testing.T, accept string) {
		format, media := negotiateInfo(accept)
		if got, ok := infoFormats[media]; !ok || got != format {
			t.Fatalf("negotiateInfo(%q) = %v %q: not a known pair", accept, format, media)
		}
		if len(appendInfo(nil, format, ChannelInfo{Messages: 1, Requested: -1})) == 0 {
			t.Fatal("empty info body")
		}
	})
}

// FuzzQueryParam checks the channel id fast path against url.Query, the
// oracle Caddy's {http.request.uri.query.*} placeholder uses.
func FuzzQueryParam(f *testing.F) {
	for _, q := range []string{"id=a", "id=a&id=b", "x=1&id=%41", "id=a;b&id=c", "i%64=z", "id=%zz&id=ok", "id", "&&id=&", "id=a+b"} {
		f.Add(q, "id")
	}
	f.Fuzz(func(t *testing.T, raw, key string) {
		want := strings.Join((&url.URL{RawQuery: raw}).Query()[key], ",")
		if got := queryParam(raw, key); got != want {
			t.Fatalf("queryParam(%q, %q) = %q, url.Query gives %q", raw, key, got, want)
		}
	})
}
