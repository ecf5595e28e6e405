package caddypush

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"

	"github.com/caddyserver/caddy/v2/caddytest"
)

// These integration tests run a real in-process Caddy (caddytest) on
// mainConfig and talk to it over real HTTP/1.1 and HTTP/2 (h2c).

func TestRoundTripAndHeaders(t *testing.T) { forEachStore(t, testRoundTripAndHeaders) }

func testRoundTripAndHeaders(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	r := publish(t, "/pub", ch, "hello")
	if r.status != 202 {
		t.Fatalf("publish without waiters: %d, want 202", r.status)
	}
	if r.body != "queued messages: 1\r\nlast requested: -1 sec. ago (-1=never)\r\nactive subscribers: 0\r\n" {
		t.Fatalf("info body %q", r.body)
	}
	s := do(t, h1Client, "GET", base+"/sub?id="+ch, nil)
	if s.status != 200 || s.body != "hello" {
		t.Fatalf("subscribe: %d %q", s.status, s.body)
	}
	want := map[string]string{
		"Content-Type":                  "text/plain",
		"Etag":                          "0",
		"Vary":                          "If-None-Match, If-Modified-Since",
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Expose-Headers": "Last-Modified, Etag",
		"Content-Length":                "5",
		// No cache may keep an answer that depends on the cursor, and the
		// publisher chooses the Content-Type: no sniffing.
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range want {
		if got := s.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if _, err := http.ParseTime(s.header.Get("Last-Modified")); err != nil {
		t.Errorf("Last-Modified %q: %v", s.header.Get("Last-Modified"), err)
	}

	// No content type in, none out (and no sniffing).
	ch2 := chanName(t, "noct")
	do(t, h1Client, "POST", base+"/pub?id="+ch2, strings.NewReader("<html>x</html>"))
	s = do(t, h1Client, "GET", base+"/sub?id="+ch2, nil)
	if ct, ok := s.header["Content-Type"]; ok {
		t.Fatalf("Content-Type %q sent for a message without one", ct)
	}
	// Content type passes through verbatim.
	ch3 := chanName(t, "ct")
	do(t, h1Client, "POST", base+"/pub?id="+ch3, strings.NewReader("{}"), "Content-Type", "application/vnd.x+json; charset=utf-8")
	s = do(t, h1Client, "GET", base+"/sub?id="+ch3, nil)
	if got := s.header.Get("Content-Type"); got != "application/vnd.x+json; charset=utf-8" {
		t.Fatalf("Content-Type = %q", got)
	}
}

func TestWaiterGets201AndSameSecondTraversal(t *testing.T) {
	forEachStore(t, testWaiterGets201AndSameSecondTraversal)
}

func testWaiterGets201AndSameSecondTraversal(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	got := make(chan resp, 1)
	getAsync(h1Client, base+"/sub?id="+ch, got)
	waitFor(t, "waiter", func() bool { return waiters(t, "/"+ch) == 1 })
	r := publish(t, "/pub", ch, "m0")
	if r.status != 201 || !strings.Contains(r.body, "active subscribers: 1") {
		t.Fatalf("publish to a waiter: %d %q", r.status, r.body)
	}
	first := <-got
	if first.status != 200 || first.body != "m0" {
		t.Fatalf("waiter got %d %q", first.status, first.body)
	}
	// Several messages in one second are traversed in order by Etag.
	for i := 1; i <= 4; i++ {
		publish(t, "/pub", ch, fmt.Sprintf("m%d", i))
	}
	cur := first.cursor()
	for i := 1; i <= 4; i++ {
		r := do(t, h1Client, "GET", base+"/sub?id="+ch, nil, cur.headers()...)
		if r.body != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: got %q (cursor %v)", i, r.body, cur)
		}
		cur = r.cursor()
	}
}

func TestNoLossNoDuplicates(t *testing.T) { forEachStore(t, testNoLossNoDuplicates) }

func testNoLossNoDuplicates(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	const subs, pubs, total = 50, 4, 500
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	got := make([][]string, subs)
	errs := make(chan error, subs+pubs)
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cur cursor
			for len(got[i]) < total {
				r, err := doCtx(ctx, h1Client, "GET", base+"/sub?id="+ch, nil, cur.headers()...)
				if err != nil || r.status != 200 {
					errs <- fmt.Errorf("subscriber %d: %v %d", i, err, r.status)
					return
				}
				got[i] = append(got[i], r.body)
				cur = r.cursor()
			}
		}()
	}
	waitFor(t, "50 waiters", func() bool { return waiters(t, "/"+ch) == subs })
	var pwg sync.WaitGroup
	for p := range pubs {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for j := range total / pubs {
				r, err := doCtx(ctx, h1Client, "POST", base+"/pub/big?id="+ch, strings.NewReader(fmt.Sprintf("%d-%d", p, j)))
				if err != nil || (r.status != 201 && r.status != 202) {
					errs <- fmt.Errorf("publisher %d: %v %d", p, err, r.status)
					return
				}
			}
		}()
	}
	pwg.Wait()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range subs {
		seen := map[string]bool{}
		for _, b := range got[i] {
			if seen[b] {
				t.Fatalf("subscriber %d received %s twice", i, b)
			}
			seen[b] = true
		}
		if len(seen) != total {
			t.Fatalf("subscriber %d received %d of %d", i, len(seen), total)
		}
		if fmt.Sprint(got[i]) != fmt.Sprint(got[0]) {
			t.Fatalf("subscriber %d saw another order than subscriber 0", i)
		}
	}
}

// broadcast parks n waiters on one channel through client c, publishes once
// and checks that every waiter got the message.
func broadcast(t *testing.T, c *http.Client, n int) {
	ch := chanName(t, "b")
	results := make(chan resp, n)
	for range n {
		getAsync(c, base+"/sub?id="+ch, results)
	}
	waitFor(t, "waiters", func() bool { return waiters(t, "/"+ch) == n })
	pr := publish(t, "/pub", ch, "all")
	if pr.status != 201 || !strings.Contains(pr.body, fmt.Sprintf("active subscribers: %d", n)) {
		t.Fatalf("publish: %d %q", pr.status, pr.body)
	}
	for range n {
		r := <-results
		if r.status != 200 || r.body != "all" {
			t.Fatalf("waiter got %d %q", r.status, r.body)
		}
		if c == h2Client && r.proto != 2 {
			t.Fatalf("expected HTTP/2, got HTTP/%d", r.proto)
		}
	}
}

func TestBroadcast200Waiters(t *testing.T) { forEachStore(t, testBroadcast200Waiters) }

func testBroadcast200Waiters(t *testing.T) {
	startMain(t)
	broadcast(t, h1Client, 200)
}

func TestHTTP2RoundTripAndBroadcast(t *testing.T) { forEachStore(t, testHTTP2RoundTripAndBroadcast) }

func testHTTP2RoundTripAndBroadcast(t *testing.T) {
	startMain(t)
	ch := chanName(t, "rt")
	publish(t, "/pub", ch, "over h2")
	r := do(t, h2Client, "GET", base+"/sub?id="+ch, nil)
	if r.proto != 2 || r.status != 200 || r.body != "over h2" || r.header.Get("Etag") != "0" {
		t.Fatalf("h2 round trip: HTTP/%d %d %q", r.proto, r.status, r.body)
	}
	broadcast(t, h2Client, 200)
}

func TestConcurrencyFirstAndLast(t *testing.T) { forEachStore(t, testConcurrencyFirstAndLast) }

func testConcurrencyFirstAndLast(t *testing.T) {
	startMain(t)
	ch := chanName(t, "first")
	got := make(chan resp, 1)
	getAsync(h1Client, base+"/sub/first?id="+ch, got)
	waitFor(t, "first waiter", func() bool { return waiters(t, "/"+ch) == 1 })
	publish(t, "/pub/off", ch, "x") // wakes the waiter; nothing is stored
	<-got
	getAsync(h1Client, base+"/sub/first?id="+ch, got)
	waitFor(t, "first waiter again", func() bool { return waiters(t, "/"+ch) == 1 })
	r := do(t, h1Client, "GET", base+"/sub/first?id="+ch, nil)
	if r.status != 409 || r.body != "" {
		t.Fatalf("second request under first: %d %q", r.status, r.body)
	}
	if waiters(t, "/"+ch) != 1 {
		t.Fatal("the first waiter was not kept")
	}
	publish(t, "/pub/off", ch, "y")
	if r := <-got; r.body != "y" {
		t.Fatalf("kept waiter got %q", r.body)
	}

	ch = chanName(t, "last")
	old := make(chan resp, 2)
	for range 2 {
		getAsync(h1Client, base+"/sub?id="+ch, old)
	}
	waitFor(t, "two waiters", func() bool { return waiters(t, "/"+ch) == 2 })
	getAsync(h1Client, base+"/sub/last?id="+ch, got)
	for range 2 {
		if r := <-old; r.status != 409 {
			t.Fatalf("displaced waiter got %d", r.status)
		}
	}
	waitFor(t, "last waiter", func() bool { return waiters(t, "/"+ch) == 1 })
	publish(t, "/pub", ch, "z")
	if r := <-got; r.status != 200 || r.body != "z" {
		t.Fatalf("last waiter got %d %q", r.status, r.body)
	}
}

func TestDeleteSends410(t *testing.T) { forEachStore(t, testDeleteSends410) }

func testDeleteSends410(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "stored")
	cur := do(t, h1Client, "GET", base+"/sub?id="+ch, nil).cursor()
	got := make(chan resp, 3)
	for range 3 {
		getAsync(h1Client, base+"/sub?id="+ch, got, cur.headers()...)
	}
	waitFor(t, "waiters", func() bool { return waiters(t, "/"+ch) == 3 })
	r := do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil, "Accept", "application/json")
	if r.status != 200 || roundRequested(r.body) != `{"messages": 1, "requested": 0, "subscribers": 3}` {
		t.Fatalf("delete: %d %q", r.status, r.body)
	}
	for range 3 {
		if w := <-got; w.status != 410 || w.body != "" {
			t.Fatalf("waiter got %d %q", w.status, w.body)
		}
	}
	if r := do(t, h1Client, "GET", base+"/pub?id="+ch, nil); r.status != 404 || r.body != "" {
		t.Fatalf("GET after delete: %d %q", r.status, r.body)
	}
	if r := do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil); r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
}

func TestChannelInfoFormatsAndMethods(t *testing.T) {
	forEachStore(t, testChannelInfoFormatsAndMethods)
}

func testChannelInfoFormatsAndMethods(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	if r := do(t, h1Client, "GET", base+"/pub?id="+ch, nil); r.status != 404 {
		t.Fatalf("GET of a missing channel: %d", r.status)
	}
	if r := do(t, h1Client, "PATCH", base+"/pub?id="+ch, nil); r.status != 404 {
		t.Fatalf("PATCH of a missing channel: %d", r.status)
	}
	r := do(t, h1Client, "PUT", base+"/pub?id="+ch, strings.NewReader("ignored"))
	if r.status != 200 || !strings.HasPrefix(r.body, "queued messages: 0\r\n") {
		t.Fatalf("PUT: %d %q", r.status, r.body)
	}
	tests := []struct{ accept, ctype, body string }{
		{"", "text/plain", "queued messages: 0\r\nlast requested: -1 sec. ago (-1=never)\r\nactive subscribers: 0\r\n"},
		{"*/*", "text/plain", "queued messages: 0\r\n"},
		{"text/json", "text/json", `{"messages": 0, "requested": -1, "subscribers": 0}`},
		{"application/x-json;q=0.1, text/xml", "application/x-json", `{"messages": 0`},
		{"text/html, application/xml;q=0.9, application/json", "application/xml",
			"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<channel>\n  <messages>0</messages>\n  <requested>-1</requested>\n  <subscribers>0</subscribers>\n</channel>\n"},
		{"text/x-yaml", "text/x-yaml", "---\nmessages: 0\nrequested: -1\nsubscribers: 0\n"},
		{"image/png", "text/plain", "queued messages: 0"},
	}
	for _, tt := range tests {
		r := do(t, h1Client, "GET", base+"/pub?id="+ch, nil, "Accept", tt.accept)
		if r.status != 200 || r.header.Get("Content-Type") != tt.ctype || !strings.HasPrefix(r.body, tt.body) {
			t.Errorf("Accept %q: %d %q %q", tt.accept, r.status, r.header.Get("Content-Type"), r.body)
		}
	}
	r = do(t, h1Client, "PATCH", base+"/pub?id="+ch, nil)
	if r.status != 405 || r.header.Get("Allow") != "GET, POST, PUT, DELETE, OPTIONS" {
		t.Fatalf("PATCH: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	r = do(t, h1Client, "POST", base+"/sub?id="+ch, nil)
	if r.status != 405 || r.header.Get("Allow") != "GET, OPTIONS" {
		t.Fatalf("POST to subscriber: %d Allow %q", r.status, r.header.Get("Allow"))
	}
	r = do(t, h1Client, "OPTIONS", base+"/sub?id="+ch, nil)
	if r.status != 200 || r.header.Get("Access-Control-Allow-Methods") != "GET, OPTIONS" ||
		r.header.Get("Access-Control-Allow-Headers") != "If-None-Match, If-Modified-Since, Origin" ||
		r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("subscriber OPTIONS: %d %v", r.status, r.header)
	}
	r = do(t, h1Client, "OPTIONS", base+"/pub/hdr", nil)
	if r.status != 200 || r.header.Get("Access-Control-Allow-Methods") != "GET, POST, PUT, DELETE, OPTIONS" ||
		r.header.Get("Access-Control-Allow-Headers") != "Content-Type, Origin" ||
		r.header.Get("Access-Control-Allow-Origin") != "https://example.com" {
		t.Fatalf("publisher OPTIONS: %d %v", r.status, r.header)
	}
	// channel_id from a header
	r = do(t, h1Client, "POST", base+"/pub/hdr", strings.NewReader("h"), "X-Channel", ch)
	if r.status != 202 || !strings.HasPrefix(r.body, "queued messages: 1") {
		t.Fatalf("publish by header id: %d %q", r.status, r.body)
	}
}

func TestBufferTrimmingAndStoreOff(t *testing.T) { forEachStore(t, testBufferTrimmingAndStoreOff) }

func testBufferTrimmingAndStoreOff(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	var r resp
	for i := range 15 {
		r = publish(t, "/pub", ch, fmt.Sprint(i))
	}
	if !strings.HasPrefix(r.body, "queued messages: 10\r\n") {
		t.Fatalf("after 15 publishes: %q", r.body)
	}
	if s := do(t, h1Client, "GET", base+"/sub?id="+ch, nil); s.body != "5" {
		t.Fatalf("oldest kept message is %q, want 5", s.body)
	}
	off := chanName(t, "off")
	r = publish(t, "/pub/off", off, "gone")
	if r.status != 202 || !strings.HasPrefix(r.body, "queued messages: 0\r\n") {
		t.Fatalf("store off: %d %q", r.status, r.body)
	}
	// min_message_recipients 2: the oldest goes after two receipts.
	rc := chanName(t, "recip")
	publish(t, "/pub/recip", rc, "r0")
	publish(t, "/pub/recip", rc, "r1")
	do(t, h1Client, "GET", base+"/sub?id="+rc, nil)
	do(t, h1Client, "GET", base+"/sub?id="+rc, nil)
	if s := do(t, h1Client, "GET", base+"/sub?id="+rc, nil); s.body != "r1" {
		t.Fatalf("after two receipts the oldest is %q, want r1", s.body)
	}
}

func TestExpiryAndChannelTimeout(t *testing.T) { forEachStore(t, testExpiryAndChannelTimeout) }

func testExpiryAndChannelTimeout(t *testing.T) {
	startMain(t)
	defer testSkew.Store(0)
	ch := chanName(t, "a")
	publish(t, "/pub/short", ch, "old")
	testSkew.Add(int64(6 * time.Second))
	publish(t, "/pub/short", ch, "new")
	testSkew.Add(int64(5 * time.Second)) // "old" is 11 s old: expired
	if s := do(t, h1Client, "GET", base+"/sub?id="+ch, nil); s.body != "new" {
		t.Fatalf("got %q after expiry, want new", s.body)
	}
	if r := do(t, h1Client, "GET", base+"/pub?id="+ch, nil); !strings.HasPrefix(r.body, "queued messages: 1\r\n") {
		t.Fatalf("expired message still counted: %q", r.body)
	}
	testSkew.Add(int64(10 * time.Second)) // everything expired; channel idle 10 s > 5 s
	current.store.Sweep()
	if r := do(t, h1Client, "GET", base+"/pub?id="+ch, nil); r.status != 404 {
		t.Fatalf("channel after channel_timeout: %d", r.status)
	}
}

func TestSubscriberTimeoutIntervalPollAndNewest(t *testing.T) {
	forEachStore(t, testSubscriberTimeoutIntervalPollAndNewest)
}

func testSubscriberTimeoutIntervalPollAndNewest(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	start := time.Now()
	r := do(t, h1Client, "GET", base+"/sub/timeout?id="+ch, nil, "If-None-Match", "4")
	if r.status != 304 || r.header.Get("Etag") != "" || r.header.Get("Last-Modified") != "" || r.body != "" ||
		r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("timeout: %d %v %q", r.status, r.header, r.body)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("answered after %v, before the 1s timeout", el)
	}
	if waiters(t, "/"+ch) != 0 {
		t.Fatal("timed-out waiter still counted")
	}
	// interval-poll: 304 echoing the cursor, never a waiter.
	ims := "Thu, 26 Nov 2026 06:06:17 GMT"
	r = do(t, h1Client, "GET", base+"/poll?id="+ch, nil, "If-Modified-Since", ims, "If-None-Match", "7")
	if r.status != 304 || r.header.Get("Last-Modified") != ims || r.header.Get("Etag") != "7" ||
		r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("interval-poll: %d %v", r.status, r.header)
	}
	publish(t, "/pub", ch, "p")
	if r = do(t, h1Client, "GET", base+"/poll?id="+ch, nil); r.status != 200 || r.body != "p" {
		t.Fatalf("interval-poll with a message: %d %q", r.status, r.body)
	}
	// first_message newest: a request without a cursor waits for the next.
	got := make(chan resp, 1)
	getAsync(h1Client, base+"/sub/newest?id="+ch, got)
	waitFor(t, "newest waiter", func() bool { return waiters(t, "/"+ch) == 1 })
	publish(t, "/pub", ch, "next")
	if r := <-got; r.body != "next" {
		t.Fatalf("newest got %q", r.body)
	}
}

func TestLimitsAndBadIDs(t *testing.T) { forEachStore(t, testLimitsAndBadIDs) }

func testLimitsAndBadIDs(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	// max_channel_subscribers 2
	got := make(chan resp, 2)
	for range 2 {
		getAsync(h1Client, base+"/sub/max2?id="+ch, got)
	}
	waitFor(t, "two waiters", func() bool { return waiters(t, "/"+ch) == 2 })
	r := do(t, h1Client, "GET", base+"/sub/max2?id="+ch, nil)
	if r.status != 403 || r.header.Get("Content-Type") != "text/plain" || !strings.Contains(r.body, "max_channel_subscribers") {
		t.Fatalf("third waiter: %d %q", r.status, r.body)
	}
	publish(t, "/pub", ch, "x")
	<-got
	<-got
	// authorized_channels_only
	r = do(t, h1Client, "GET", base+"/sub/auth?id="+chanName(t, "nope"), nil)
	if r.status != 403 || !strings.Contains(r.body, "authorized_channels_only") {
		t.Fatalf("authorized only, missing channel: %d %q", r.status, r.body)
	}
	if r = do(t, h1Client, "GET", base+"/sub/auth?id="+ch, nil); r.status != 200 {
		t.Fatalf("authorized only, existing channel: %d", r.status)
	}
	// missing and empty ids
	for _, u := range []string{"/pub", "/pub?id=", "/sub", "/sub?x=1"} {
		r = do(t, h1Client, "GET", base+u, nil)
		if r.status != 404 || r.body != "No channel id provided." || r.header.Get("Content-Type") != "text/plain" {
			t.Fatalf("%s: %d %q", u, r.status, r.body)
		}
	}
	// over-long ids are refused, never truncated
	r = publish(t, "/pub/idlen", "123456789", "x")
	if r.status != 403 || !strings.Contains(r.body, "max_channel_id_length") {
		t.Fatalf("long id: %d %q", r.status, r.body)
	}
	if r = publish(t, "/pub/idlen", "12345678", "x"); r.status != 202 {
		t.Fatalf("id at the limit: %d", r.status)
	}
	long := strings.Repeat("x", 1025)
	if r = do(t, h1Client, "GET", base+"/sub?id="+long, nil); r.status != 403 {
		t.Fatalf("1025-byte id on the default limit: %d", r.status)
	}
	// URL-decoded ids: %41 and A are one channel
	publish(t, "/pub", "enc"+ch+"A", "decoded")
	if r = do(t, h1Client, "GET", base+"/sub?id=enc"+ch+"%41", nil); r.body != "decoded" {
		t.Fatalf("%%41: %q", r.body)
	}
	// channel_group separates namespaces
	publish(t, "/pub/grp", ch+"g", "in group")
	if r = do(t, h1Client, "GET", base+"/sub/grp?id="+ch+"g", nil); r.body != "in group" {
		t.Fatalf("group subscriber got %q", r.body)
	}
	if _, err := current.store.Info("/" + ch + "g"); err == nil {
		t.Fatal("group publish created the ungrouped channel")
	}
}

func TestBodiesLargeBinaryAndTooLarge(t *testing.T) {
	forEachStore(t, testBodiesLargeBinaryAndTooLarge)
}

func testBodiesLargeBinaryAndTooLarge(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	r := do(t, h1Client, "POST", base+"/pub?id="+ch, bytes.NewReader(big), "Content-Type", "application/octet-stream")
	if r.status != 202 {
		t.Fatalf("1 MiB publish: %d %q", r.status, r.body)
	}
	s := do(t, h1Client, "GET", base+"/sub?id="+ch, nil)
	if s.body != string(big) {
		t.Fatalf("1 MiB binary body changed (%d bytes back)", len(s.body))
	}
	r = do(t, h1Client, "POST", base+"/pub?id="+ch, bytes.NewReader(append(big, 0)))
	if r.status != 413 || !strings.Contains(r.body, "max_message_size") {
		t.Fatalf("1 MiB + 1: %d %q", r.status, r.body)
	}
	// Unknown length (chunked) over the limit.
	r = do(t, h1Client, "POST", base+"/pub/small?id="+ch, io.MultiReader(strings.NewReader(strings.Repeat("a", 1025))))
	if r.status != 413 {
		t.Fatalf("chunked 1025 bytes over a 1k limit: %d", r.status)
	}
	if info, _ := current.store.Info("/" + ch); info.Messages != 1 {
		t.Fatalf("refused bodies were stored: %d messages", info.Messages)
	}
	// Empty body is a message too.
	e := chanName(t, "empty")
	if r = do(t, h1Client, "POST", base+"/pub?id="+e, nil); r.status != 202 {
		t.Fatalf("empty publish: %d", r.status)
	}
	if s = do(t, h1Client, "GET", base+"/sub?id="+e, nil); s.status != 200 || s.body != "" || s.header.Get("Content-Length") != "0" {
		t.Fatalf("empty message: %d %q", s.status, s.body)
	}
}

func TestGarbageCursorHeaders(t *testing.T) { forEachStore(t, testGarbageCursorHeaders) }

func testGarbageCursorHeaders(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "m0")
	publish(t, "/pub", ch, "m1")
	first := do(t, h1Client, "GET", base+"/sub?id="+ch, nil)
	lm := first.header.Get("Last-Modified")
	tests := []struct {
		name string
		hdr  []string
		want string
	}{
		{"garbage If-Modified-Since", []string{"If-Modified-Since", "yesterday", "If-None-Match", "0"}, "m0"},
		{"garbage If-None-Match", []string{"If-Modified-Since", lm, "If-None-Match", "zzz"}, "m1"},
		{"quoted etag", []string{"If-Modified-Since", lm, "If-None-Match", `"0"`}, "m1"},
		{"weak etag", []string{"If-Modified-Since", lm, "If-None-Match", `W/"0"`}, "m1"},
		{"seed client: If-Modified-Since alone", []string{"If-Modified-Since", lm}, "m1"},
		{"obs-text junk", []string{"If-None-Match", "\xff\xfe", "If-Modified-Since", "\xff"}, "m0"},
	}
	for _, tt := range tests {
		r := do(t, h1Client, "GET", base+"/sub?id="+ch, nil, tt.hdr...)
		if r.status != 200 || r.body != tt.want {
			t.Errorf("%s: %d %q, want %q", tt.name, r.status, r.body, tt.want)
		}
	}
	// Control bytes in a header are malformed HTTP: Go's server refuses the
	// request with 400 before any handler runs, and the connection is not
	// left hanging.
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /sub?id=%s HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: \x01\x02\r\n\r\n", ch)
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 400 ") {
		t.Fatalf("control bytes in If-None-Match: %q %v", status, err)
	}
}

func TestEncodeKeepsEtagCursor(t *testing.T) { forEachStore(t, testEncodeKeepsEtagCursor) }

func testEncodeKeepsEtagCursor(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	for i := range 3 {
		publish(t, "/pub", ch, strings.Repeat(fmt.Sprint(i), 100))
	}
	var cur cursor
	for i := range 3 {
		r := do(t, h1Client, "GET", base+"/gz/sub?id="+ch, nil, append(cur.headers(), "Accept-Encoding", "gzip")...)
		if r.header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("response %d not gzipped (%v)", i, r.header)
		}
		zr, err := gzip.NewReader(strings.NewReader(r.body))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(zr)
		if string(body) != strings.Repeat(fmt.Sprint(i), 100) {
			t.Fatalf("message %d: got %.10q... with Etag %q", i, body, r.header.Get("Etag"))
		}
		cur = r.cursor() // echoed verbatim, as a client does
	}
}

// TestReloadKeepsWaitersAndMessages parks 1000 long-polls, reloads the
// config with changed limits and publishes through the new config.
func TestReloadKeepsWaitersAndMessages(t *testing.T) {
	forEachStore(t, testReloadKeepsWaitersAndMessages)
}

func testReloadKeepsWaitersAndMessages(t *testing.T) {
	tester := startMain(t)
	stored := chanName(t, "stored")
	for i := range 3 {
		publish(t, "/pub", stored, fmt.Sprint(i))
	}
	ch := chanName(t, "w")
	const n = 1000
	results := make(chan resp, n)
	for range n {
		getAsync(h1Client, base+"/sub?id="+ch, results)
	}
	waitFor(t, "1000 waiters", func() bool { return waiters(t, "/"+ch) == n })

	load(tester, strings.Replace(current.config, "max_reserved_memory 64M", "max_reserved_memory 48M", 1))
	if got := current.store.MaxBytes(); got != 48<<20 {
		t.Fatalf("max_reserved_memory after reload = %d, want %d", got, 48<<20)
	}
	if w := waiters(t, "/"+ch); w != n {
		t.Fatalf("%d waiters after reload, want %d", w, n)
	}
	r := publish(t, "/pub", ch, "after reload")
	if r.status != 201 || !strings.Contains(r.body, "active subscribers: 1000") {
		t.Fatalf("publish after reload: %d %q", r.status, r.body)
	}
	for range n {
		if r := <-results; r.status != 200 || r.body != "after reload" {
			t.Fatalf("waiter got %d %q", r.status, r.body)
		}
	}
	var cur cursor
	for i := range 3 {
		s := do(t, h1Client, "GET", base+"/sub?id="+stored, nil, cur.headers()...)
		if s.body != fmt.Sprint(i) {
			t.Fatalf("stored message %d after reload: %q", i, s.body)
		}
		cur = s.cursor()
	}
}

// TestMemoryCap fills the store to its budget, expects 507, then recovers
// once the messages expire.
func TestMemoryCap(t *testing.T) {
	tester := startMain(t)
	defer testSkew.Store(0)
	mem := memoryCase.store.(*pushstore.MemoryStore)
	mem.Collect()
	budget := mem.UsedBytes() + 64<<10
	cfg := strings.Replace(mainConfig, "max_reserved_memory 64M", fmt.Sprintf("max_reserved_memory %d", budget), 1)
	load(tester, cfg)
	defer load(tester, mainConfig)
	body := strings.Repeat("x", 8<<10)
	var refused resp
	for i := 0; i < 20; i++ {
		r := publish(t, "/pub/short", chanName(t, fmt.Sprint(i)), body)
		if r.status == 507 {
			refused = r
			break
		}
		if r.status != 202 {
			t.Fatalf("publish %d: %d", i, r.status)
		}
	}
	if refused.status != 507 || refused.header.Get("Content-Type") != "text/plain" || !strings.Contains(refused.body, "max_reserved_memory") {
		t.Fatalf("no 507 before the budget ran out: %+v", refused)
	}
	if used := mem.UsedBytes(); used > budget {
		t.Fatalf("store holds %d bytes, over its budget %d", used, budget)
	}
	testSkew.Add(int64(11 * time.Second)) // message_timeout 10s on /pub/short
	if r := publish(t, "/pub/short", chanName(t, "after"), body); r.status != 202 {
		t.Fatalf("publish after expiry: %d %q", r.status, r.body)
	}
}

// TestHTTP2OverTLS runs a round trip and a broadcast over HTTP/2 with TLS
// (ALPN h2, Caddy's internal CA), as browsers use it.
func TestHTTP2OverTLS(t *testing.T) {
	tester := caddytest.NewTester(t)
	cfg := strings.Replace(mainConfig, ":9080 {", "https://localhost:9443 {\n\ttls internal\n\tpush_publisher /tls/pub\n\tpush_subscriber /tls/sub\n}\n:9080 {", 1)
	load(tester, strings.Replace(cfg, "protocols h1 h2c", "protocols h1 h2 h2c", 1))
	defer load(tester, mainConfig)
	tlsClient := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // Caddy's internal CA, not installed here
		ForceAttemptHTTP2: true,
	}}
	const tlsBase = "https://localhost:9443"
	waitFor(t, "the internal certificate", func() bool { // issued in the background
		_, err := doCtx(context.Background(), tlsClient, "GET", tlsBase+"/tls/pub?id=x", nil)
		return err == nil
	})
	ch := chanName(t, "a")
	if r := do(t, tlsClient, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader("over tls")); r.status != 202 || r.proto != 2 {
		t.Fatalf("publish: HTTP/%d %d", r.proto, r.status)
	}
	results := make(chan resp, 50)
	for range 50 {
		getAsync(tlsClient, tlsBase+"/tls/sub?id="+ch, results, "If-None-Match", "0",
			"If-Modified-Since", do(t, tlsClient, "GET", tlsBase+"/tls/sub?id="+ch, nil).header.Get("Last-Modified"))
	}
	waitFor(t, "50 waiters", func() bool { return waiters(t, "/"+ch) == 50 })
	if r := do(t, tlsClient, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader("broadcast")); r.status != 201 {
		t.Fatalf("broadcast publish: %d", r.status)
	}
	for range 50 {
		if r := <-results; r.status != 200 || r.body != "broadcast" || r.proto != 2 {
			t.Fatalf("waiter: HTTP/%d %d %q", r.proto, r.status, r.body)
		}
	}
}
