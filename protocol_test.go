package caddypush

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// This file holds tests of the push module's protocol as the original
// document uses it (its Ruby client) and of what every subscriber answer
// carries.

// TestSeedRubyClientSequence runs the seed's Ruby client (nginx-comet.txt)
// as it is, but for the URL, with its exact requests: two listeners that
// start without a header, then each re-subscribes with If-Modified-Since
// alone (the response's Last-Modified), and a publisher that POSTs
// "Hello @ <time>" without a Content-Type every few seconds (here the
// store's clock is moved a second instead, so each lands in a second of
// its own, as the seed's 5 s do). Both
// listeners get every message once, in order, and the publisher gets 201
// once both wait.
func TestSeedRubyClientSequence(t *testing.T) { forEachStore(t, testSeedRubyClientSequence) }

func testSeedRubyClientSequence(t *testing.T) {
	startMain(t)
	defer testSkew.Store(0)
	ch := chanName(t, "pub")
	const n = 3
	type got struct {
		listener int
		body     string
		status   int
	}
	out := make(chan got, 2*n+2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listen := func(l int) {
		ims := "" // the first request has no header (:head => nil)
		for failed := 0; failed < 10; {
			req, _ := http.NewRequestWithContext(ctx, "GET", base+"/sub?id="+ch, nil)
			if ims != "" {
				req.Header.Set("If-Modified-Since", ims)
			}
			res, err := h1Client.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					return // the test ended
				}
				// A connection the server closed (the harness's reload
				// before the test hands some to the old server): ask again.
				failed++
				continue
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			out <- got{l, string(b), res.StatusCode}
			ims = res.Header.Get("Last-Modified") // response_header['LAST_MODIFIED']
		}
	}
	go listen(1)
	go listen(2)
	waitFor(t, "two listeners", func() bool { return waiters(t, "/"+ch) == 2 })
	var sent []string
	for i := range n {
		if i > 0 {
			testSkew.Add(int64(time.Second)) // the seed publishes every 5 s: a second of its own
			waitFor(t, "two listeners again", func() bool { return waiters(t, "/"+ch) == 2 })
		}
		body := fmt.Sprintf("Hello @ %s #%d", time.Now().Format(time.RFC3339Nano), i)
		r := do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader(body)) // em-http: no Content-Type
		if r.status != 201 || !strings.Contains(r.body, "active subscribers: 2") {
			t.Fatalf("publication %d: %d %q", i, r.status, r.body)
		}
		sent = append(sent, body)
	}
	recv := map[int][]string{}
	deadline := time.After(10 * time.Second)
	for len(recv[1])+len(recv[2]) < 2*n {
		select {
		case g := <-out:
			if g.status != 200 {
				t.Fatalf("listener %d got %d %q", g.listener, g.status, g.body)
			}
			recv[g.listener] = append(recv[g.listener], g.body)
		case <-deadline:
			t.Fatalf("listeners got %v, want %q each", recv, sent)
		}
	}
	for l := 1; l <= 2; l++ {
		if strings.Join(recv[l], "|") != strings.Join(sent, "|") {
			t.Errorf("listener %d got %q, want %q", l, recv[l], sent)
		}
	}
}

// TestSubscriberAnswersCarryAllowOrigin: allow_origin is "the value of
// Access-Control-Allow-Origin on OPTIONS and responses" (PROTOCOL.md,
// section 1; configuration.md: "on answers and OPTIONS"), and a page on
// another origin cannot read an answer without it. A long-poll's 304
// (timeout), 410 (deleted) and 409 (first), and an interval-poll's 304,
// carry none today: fetch() rejects them as network errors, so a
// cross-origin client cannot tell "nothing new" or "channel deleted" from
// a broken connection, and an interval-poll cannot read its echoed cursor.
func TestSubscriberAnswersCarryAllowOrigin(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	origin := []string{"Origin", "https://other.example"}
	check := func(what string, r resp, status int) {
		t.Helper()
		if r.status != status {
			t.Fatalf("%s: %d, want %d", what, r.status, status)
		}
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("%s (%d): Access-Control-Allow-Origin %q, want %q", what, r.status, got, "*")
		}
	}
	check("long-poll timeout", do(t, h1Client, "GET", base+"/sub/timeout?id="+ch, nil, origin...), 304)
	check("interval-poll, nothing new", do(t, h1Client, "GET", base+"/poll?id="+ch, nil,
		append(origin, "If-Modified-Since", "Thu, 26 Nov 2026 06:06:17 GMT", "If-None-Match", "7")...), 304)

	got := make(chan resp, 1)
	getAsync(h1Client, base+"/sub/first?id="+ch, got, origin...)
	waitFor(t, "waiter", func() bool { return waiters(t, "/"+ch) == 1 })
	check("concurrency first", do(t, h1Client, "GET", base+"/sub/first?id="+ch, nil, origin...), 409)
	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
	check("deleted channel", <-got, 410)
}

// TestChannelInfoAcceptOnSeveralLines: the format is that of the media type
// that appears earliest in Accept (PROTOCOL.md 3.1). A client may send
// Accept as several header lines, which HTTP defines as one comma-separated
// list (RFC 9110, 5.3); only the first line is read today, so JSON asked
// for on the second line is answered as text/plain.
func TestChannelInfoAcceptOnSeveralLines(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "m")
	req, _ := http.NewRequest("GET", base+"/pub?id="+ch, nil)
	req.Header.Add("Accept", "text/html")
	req.Header.Add("Accept", "application/json")
	res, err := h1Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "application/json" || !strings.HasPrefix(string(b), `{"messages": 1,`) {
		t.Fatalf("Accept: text/html + Accept: application/json: %q %q, want JSON", ct, b)
	}
}

// TestNoContentTypeNoSniffHTTP2: a message published without a
// Content-Type is answered without one over HTTP/2 too (PROTOCOL.md 4.2).
func TestNoContentTypeNoSniffHTTP2(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader("<html><body>x</body></html>"))
	r := do(t, h2Client, "GET", base+"/sub?id="+ch, nil)
	if r.proto != 2 || r.status != 200 {
		t.Fatalf("h2: proto %d status %d", r.proto, r.status)
	}
	if ct, ok := r.header["Content-Type"]; ok {
		t.Fatalf("Content-Type %q over HTTP/2 for a message without one", ct)
	}
}

// TestTransportHeadersOnSeveralLines: the headers that choose a
// subscriber's transport are read whole when a client sends them on
// several lines (RFC 9110, 5.3): Accept naming text/event-stream or
// multipart/mixed on its second line, TE chunked on its second, and
// Connection upgrade on its second (which the WebSocket upgrade itself
// accepts) each get their transport, not a long-poll.
func TestTransportHeadersOnSeveralLines(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "m")
	req := "GET /sub?id=" + ch + " HTTP/1.1\r\nHost: localhost\r\n%s\r\n"
	for _, c := range []struct{ lines, want, value string }{
		{"Accept: text/html\r\nAccept: text/event-stream\r\n", "Content-Type", "text/event-stream; charset=utf-8"},
		{"Accept: text/html\r\nAccept: multipart/mixed\r\n", "Content-Type", "multipart/mixed"},
		{"TE: trailers\r\nTE: chunked\r\n", "Transfer-Encoding", "chunked"},
		{"Connection: keep-alive\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "Upgrade", "websocket"},
	} {
		head := rawStream(t, fmt.Sprintf(req, c.lines)).head()
		if got := headerOf(head, c.want); !strings.HasPrefix(got, c.value) {
			t.Errorf("%q: %s %q, want %q; head:\n%s", c.lines, c.want, got, c.value, head)
		}
	}
}
