package caddypush

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestEventSource checks the EventSource transport on the wire: the head,
// `: hi` and retry first, then per message `event:` (from
// X-EventSource-Event), `id:` and one `data:` line per body line, the
// backlog then live messages, resume with Last-Event-ID and last_event_id,
// and the `:410:` comment that ends the stream on DELETE.
func TestEventSource(t *testing.T) { forEachStore(t, testEventSource) }

func testEventSource(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "first")
	do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader("line1\nline2\r\nline3\rline4\n"),
		"X-EventSource-Event", "named")
	s := openSSE(t, h1Client, base+"/sub?id="+ch)
	if h := s.resp.Header; h.Get("Cache-Control") != "no-store" || h.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("head: %v", h)
	}
	if ev, _ := s.next(); len(ev.comments) != 1 || ev.comments[0] != ": hi" || ev.hasData {
		t.Fatalf("first bytes: %+v", ev)
	}
	first := s.message(t)
	if first.data != "first" || first.event != "" || !strings.Contains(first.id, ":") {
		t.Fatalf("first event: %+v", first)
	}
	second := s.message(t)
	if second.event != "named" || second.data != "line1\nline2\nline3\nline4\n" {
		t.Fatalf("multi-line event: %+v", second)
	}
	publish(t, "/pub", ch, "live")
	if ev := s.message(t); ev.data != "live" {
		t.Fatalf("live event: %+v", ev)
	}
	s.close()

	// Resume from the second message: only what came after it.
	for _, resume := range []struct{ url, header string }{
		{base + "/sub?id=" + ch, second.id},
		{base + "/sub?id=" + ch + "&last_event_id=" + second.id, ""},
	} {
		var hdr []string
		if resume.header != "" {
			hdr = []string{"Last-Event-ID", resume.header}
		}
		r := openSSE(t, h1Client, resume.url, hdr...)
		if ev := r.message(t); ev.data != "live" {
			t.Fatalf("resumed after %s: %+v", second.id, ev)
		}
		r.close()
	}
	// Resume ids read as nchan 1.3.6 reads them: one without a colon is
	// no id (a client's `last_event_id=undefined`: the stream starts from
	// the oldest message); a readable time with an unreadable tag is that
	// time, tag 0, as is an unreadable If-None-Match beside
	// If-Modified-Since; a time that is not a number is refused.
	firstTime, tag, _ := strings.Cut(first.id, ":")
	if tag != "0" {
		t.Fatalf("the first message's id %q: want tag 0", first.id)
	}
	ft, _ := strconv.ParseInt(firstTime, 10, 64)
	ims := time.Unix(ft, 0).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		query string
		hdr   []string
		want  string // first (no id), or second: after first, which is (T, 0)
	}{
		{"&last_event_id=undefined", nil, first.data},
		{"", []string{"Last-Event-ID", "null"}, first.data},
		{"", []string{"Last-Event-ID", firstTime}, first.data},
		{"&last_event_id=" + firstTime + ":abc", nil, second.data},
		{"", []string{"Last-Event-ID", firstTime + ":[0"}, second.data},
		{"", []string{"If-Modified-Since", ims, "If-None-Match", "garbage"}, second.data},
		{"", []string{"If-Modified-Since", ims, "If-None-Match", "99999999999999999999"}, second.data},
	} {
		r := openSSE(t, h1Client, base+"/sub?id="+ch+tc.query, tc.hdr...)
		if ev := r.message(t); ev.data != tc.want {
			t.Fatalf("resume %q %q: %+v, want %q", tc.query, tc.hdr, ev, tc.want)
		}
		r.close()
	}
	for _, id := range []string{"1.5:0", ":0", "x:1"} {
		if r := do(t, h1Client, "GET", base+"/sub?id="+ch, nil, "Accept", "text/event-stream", "Last-Event-ID", id); r.status != 400 ||
			r.body != "Message ID invalid" {
			t.Fatalf("Last-Event-ID %q: %d %q", id, r.status, r.body)
		}
	}

	d := openSSE(t, h1Client, base+"/sub?id="+ch+"&last_event_id="+second.id)
	d.message(t)
	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
	if got := d.ending(t); len(got) != 1 || got[0] != ":410: 410 Gone" {
		t.Fatalf("the end after DELETE: %q", got)
	}
}

// TestEventSourceTimeoutAndPing: the subscriber timeout ends a stream that
// got no message with `:408:`; pings are `event: ping` with no data.
func TestEventSourceTimeoutAndPing(t *testing.T) {
	startMain(t)
	start := time.Now() // before the request: the server's timer starts before its head reaches us
	s := openSSE(t, h1Client, base+"/s/timeout?id="+chanName(t, "a"))
	if got := s.ending(t); len(got) != 2 || got[0] != ": hi" || got[1] != ":408: 408 Request Timeout" {
		t.Fatalf("timeout: %q", got)
	}
	if el := time.Since(start); el < time.Second {
		t.Fatalf("ended after %v, before the 1s timeout", el)
	}
	p := openSSE(t, h1Client, base+"/s/ping?id="+chanName(t, "p"))
	p.next()
	if ev, err := p.next(); err != nil || ev.event != "ping" || ev.hasData {
		t.Fatalf("ping: %+v %v", ev, err)
	}
}

// TestEventSourcePingSettings: nchan's EventSource ping settings shape
// the keep-alive as nchan's does: the comment, event and data lines that
// are not empty, in that order; with none, an empty comment.
func TestEventSourcePingSettings(t *testing.T) {
	startMain(t)
	for path, want := range map[string]string{
		"/s/ping/said": ":keepalive\ndata: {\"t\": 1}\n\n",
		"/s/ping/none": ":\n\n",
		"/s/ping":      "event: ping\n\n",
	} {
		c := rawStream(t, "GET "+path+"?id="+chanName(t, "a")+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
		c.head()
		c.until(t, "retry: 3000\n\n")
		if got := c.until(t, "\n\n"); got != want {
			t.Errorf("%s: keep-alive %q, want %q", path, got, want)
		}
	}
}

// TestEventSourceOverHTTP2AndThroughEncode: the stream is flushed event by
// event over HTTP/2 (nchan's open bug #576 is SSE over HTTP/2), and behind
// Caddy's encode (gzip), each event arrives while the stream is open.
func TestEventSourceOverHTTP2AndThroughEncode(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	s := openSSE(t, h2Client, base+"/sub?id="+ch)
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("proto %d", s.resp.ProtoMajor)
	}
	for i := range 3 {
		publish(t, "/pub", ch, fmt.Sprint("h2-", i))
		if ev := s.message(t); ev.data != fmt.Sprint("h2-", i) {
			t.Fatalf("over HTTP/2: %+v", ev)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/gz/sub?id="+ch, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := h1Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" { // encode's default types take text/*
		t.Fatalf("encode left text/event-stream uncompressed: %v", resp.Header)
	}
	zr, err := newGzipReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	gz := &sseStream{resp: resp, r: bufio.NewReader(zr), cancel: func() {}}
	for i := range 3 { // the backlog, then one live event
		ev := gz.message(t)
		if want := fmt.Sprint("h2-", i); ev.data != want {
			t.Fatalf("through encode: %+v, want %s", ev, want)
		}
	}
	publish(t, "/pub", ch, "live")
	if ev := gz.message(t); ev.data != "live" {
		t.Fatalf("live through encode: %+v", ev)
	}
}

// TestWebSocket checks the WebSocket transport: plain frames (text, binary
// for application/octet-stream and for a body that is not UTF-8), the
// ws+meta.nchan subprotocol's id and content-type header, resume with
// last_event_id, permessage-deflate, and the close codes of DELETE (1001
// "410 Gone"), the timeout (1000) and displacement (1008 "409 Conflict").
func TestWebSocket(t *testing.T) { forEachStore(t, testWebSocket) }

func testWebSocket(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "text")
	do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader("\x00\x01bin"), "Content-Type", "application/octet-stream")
	do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader("\xff\xfe"), "Content-Type", "image/x-test")

	plain := openWS(t, base+"/sub?id="+ch, nil)
	for _, want := range []struct {
		typ  websocket.MessageType
		body string
	}{{websocket.MessageText, "text"}, {websocket.MessageBinary, "\x00\x01bin"}, {websocket.MessageBinary, "\xff\xfe"}} {
		if typ, body := wsRead(t, plain); typ != want.typ || body != want.body {
			t.Fatalf("plain frame: %v %q, want %v %q", typ, body, want.typ, want.body)
		}
	}

	meta := openWS(t, base+"/sub?id="+ch, &websocket.DialOptions{Subprotocols: []string{"ws+meta.nchan"},
		CompressionMode: websocket.CompressionContextTakeover, CompressionThreshold: 1})
	if meta.Subprotocol() != "ws+meta.nchan" {
		t.Fatalf("subprotocol %q", meta.Subprotocol())
	}
	_, first := wsRead(t, meta)
	id, rest, _ := strings.Cut(strings.TrimPrefix(first, "id: "), "\n")
	if rest != "content-type: text/plain\n\ntext" {
		t.Fatalf("meta frame %q", first)
	}
	wsRead(t, meta)
	wsRead(t, meta)
	big := strings.Repeat("compressible ", 200)
	publish(t, "/pub", ch, big)
	if _, got := wsRead(t, meta); !strings.HasSuffix(got, "\n\n"+big) {
		t.Fatalf("a large message through permessage-deflate: %d bytes", len(got))
	}
	if _, got := wsRead(t, plain); got != big {
		t.Fatalf("the same message uncompressed: %d bytes", len(got))
	}

	resumed := openWS(t, base+"/sub?id="+ch+"&last_event_id="+id, &websocket.DialOptions{Subprotocols: []string{"ws+meta.nchan"}})
	if _, got := wsRead(t, resumed); !strings.Contains(got, "content-type: application/octet-stream\n\n\x00\x01bin") {
		t.Fatalf("resumed after %s: %q", id, got)
	}

	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
	for _, c := range []*websocket.Conn{plain, meta} {
		if code, reason := wsClosed(t, c); code != websocket.StatusGoingAway || reason != "410 Gone" {
			t.Fatalf("close after DELETE: %d %q", code, reason)
		}
	}

	timed := openWS(t, base+"/s/timeout?id="+ch, nil)
	if code, reason := wsClosed(t, timed); code != websocket.StatusNormalClosure || reason != "408 Request Timeout" {
		t.Fatalf("close at the timeout: %d %q", code, reason)
	}

	old := openWS(t, base+"/s/last?id="+ch, nil)
	waitFor(t, "the first subscriber counted", func() bool { return waiters(t, "/"+ch) == 1 })
	// A handshake from an origin the location does not allow is refused
	// before it subscribes: it displaces no one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, res, err := websocket.Dial(ctx, strings.Replace(base, "http://", "ws://", 1)+"/s/last?id="+ch,
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}})
	if err == nil || res == nil || res.StatusCode != 403 {
		t.Fatalf("a handshake from another origin: %v %v", err, res)
	}
	if n := waiters(t, "/"+ch); n != 1 {
		t.Fatalf("after a refused handshake, %d subscribers (want the first one still there)", n)
	}
	openWS(t, base+"/s/last?id="+ch, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://ok.example"}}})
	if code, reason := wsClosed(t, old); code != websocket.StatusPolicyViolation || reason != "409 Conflict" {
		t.Fatalf("close when displaced: %d %q", code, reason)
	}
}

// TestWebSocketPubSub publishes over a pub/sub location's WebSocket: a
// text frame with the handshake's Content-Type, a binary frame as
// application/octet-stream; the sender receives its own messages like any
// subscriber; a frame over max_message_size closes with 1009, on the wire
// or once inflated; a frame sent on a subscribe-only location closes with
// 1008.
func TestWebSocketPubSub(t *testing.T) { forEachStore(t, testWebSocketPubSub) }

func testWebSocketPubSub(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	listener := openSSE(t, h1Client, base+"/sub?id="+ch)
	sender := openWS(t, base+"/ps?id="+ch, &websocket.DialOptions{Subprotocols: []string{"ws+meta.nchan"},
		HTTPHeader: http.Header{"Content-Type": {"text/x-chat"}}})
	ctx := context.Background()
	if err := sender.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := sender.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, own := wsRead(t, sender); !strings.HasSuffix(own, "content-type: text/x-chat\n\nhello") {
		t.Fatalf("the sender's own message: %q", own)
	}
	if _, own := wsRead(t, sender); !strings.HasSuffix(own, "content-type: application/octet-stream\n\n\x00\x01\x02") {
		t.Fatalf("the sender's own binary message: %q", own)
	}
	if ev := listener.message(t); ev.data != "hello" {
		t.Fatalf("an EventSource subscriber got %+v", ev)
	}
	if r := publish(t, "/ps", ch, "over POST"); r.status != 201 {
		t.Fatalf("POST on the pub/sub location: %d %q", r.status, r.body)
	}
	if _, got := wsRead(t, sender); !strings.HasSuffix(got, "\n\nover POST") {
		t.Fatalf("the sender got %q", got)
	}
	tooLarge := metricValue(t, `caddy_push_publishes_total{status="413"}`)
	if err := sender.Write(ctx, websocket.MessageText, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	if code, _ := wsClosed(t, sender); code != websocket.StatusMessageTooBig {
		t.Fatalf("an over-size frame closed with %d, want 1009", code)
	}
	// Compressed, 800 KiB of one byte is a frame of about 800 bytes on the
	// wire: it is over max_message_size (1k) once inflated, and refused as
	// it inflates (before, it was published whole).
	bomb := openWS(t, base+"/ps?id="+chanName(t, "bomb"), &websocket.DialOptions{CompressionMode: websocket.CompressionNoContextTakeover})
	bomb.SetReadLimit(1 << 20)
	if err := bomb.Write(ctx, websocket.MessageText, []byte(strings.Repeat("a", 800<<10))); err != nil {
		t.Fatal(err)
	}
	if code, _ := wsClosed(t, bomb); code != websocket.StatusMessageTooBig {
		t.Fatalf("a compressed frame over max_message_size once inflated closed with %d, want 1009", code)
	}
	// both counted as publications refused 413, as a POST's are (they were not)
	waitFor(t, "the two 413s counted", func() bool {
		return metricValue(t, `caddy_push_publishes_total{status="413"}`) == max(tooLarge, 0)+2
	})

	for _, size := range []int{8, 64 << 10} { // a frame over the old 4096-byte read limit got 1009
		sub := openWS(t, base+"/sub?id="+chanName(t, "quiet"), nil)
		if err := sub.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", size))); err != nil {
			t.Fatal(err)
		}
		if code, reason := wsClosed(t, sub); code != websocket.StatusPolicyViolation || reason != "Publishing not allowed." {
			t.Fatalf("a %d-byte frame on a subscribe-only location: %d %q", size, code, reason)
		}
	}
}

// TestHTTPStreams checks multipart/mixed, chunked and the raw stream on
// the wire.
func TestHTTPStreams(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader("one"), "Content-Type", "text/plain")
	do(t, h1Client, "POST", base+"/pub?id="+ch, nil) // empty, and no Content-Type

	// multipart/mixed: "--B", then a part per message, each ending in "\r\n--B".
	mp := rawStream(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: x\r\nAccept: multipart/mixed\r\n\r\n")
	head := mp.head()
	boundary := strings.TrimPrefix(headerOf(head, "Content-Type"), "multipart/mixed; boundary=")
	if len(boundary) != 32 || strings.ContainsAny(boundary, "/.") {
		t.Fatalf("boundary %q", boundary)
	}
	part := mp.until(t, "\r\nEtag: 0\r\nContent-Type: text/plain\r\n\r\none\r\n--"+boundary)
	if !strings.HasPrefix(part, "--"+boundary+"\r\nLast-Modified: ") {
		t.Fatalf("first part %q", part)
	}
	mp.until(t, "\r\nEtag: 1\r\n\r\n\r\n--"+boundary) // the empty message, no Content-Type
	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
	mp.until(t, "--\r\n") // right after the last boundary

	ch2 := chanName(t, "b")
	publish(t, "/pub", ch2, "abc")
	publish(t, "/pub", ch2, "") // an empty message is not sent as a chunk
	publish(t, "/pub", ch2, "defgh")
	ck := rawStreamUndecoded(t, "GET /sub?id="+ch2+" HTTP/1.1\r\nHost: x\r\nTE: chunked\r\n\r\n")
	if head := ck.head(); headerOf(head, "Content-Type") != "" || headerOf(head, "Transfer-Encoding") != "chunked" {
		t.Fatalf("chunked head %q", head)
	}
	ck.until(t, "3\r\nabc\r\n5\r\ndefgh\r\n")
	// HTTP/1.0 has no chunked encoding: TE chunked there is a plain GET,
	// a long-poll (the messages ran together, unframed)
	old := rawStreamUndecoded(t, "GET /sub?id="+ch2+" HTTP/1.0\r\nHost: x\r\nTE: chunked\r\n\r\n")
	if head := old.head(); headerOf(head, "Transfer-Encoding") != "" || headerOf(head, "Content-Length") != "3" {
		t.Fatalf("TE chunked on HTTP/1.0: head %q", head)
	}
	do(t, h1Client, "DELETE", base+"/pub?id="+ch2, nil)
	ck.until(t, "0\r\n\r\n")

	ch3 := chanName(t, "c")
	publish(t, "/pub", ch3, "x")
	publish(t, "/pub", ch3, "y\n")
	raw := rawStream(t, "GET /s/raw?id="+ch3+" HTTP/1.1\r\nHost: x\r\n\r\n")
	raw.head()
	raw.until(t, "x--\ny\n--\n")
	// an empty separator stays empty, as in nchan (it became "\n")
	raw0 := rawStream(t, "GET /s/raw0?id="+ch3+" HTTP/1.1\r\nHost: x\r\n\r\n")
	raw0.head()
	publish(t, "/pub", ch3, "z")
	raw0.until(t, "xy\nz")
}

// TestTransportSelection: a plain GET is still the push module's
// long-poll; a transport the location does not serve gets 406 naming what
// it serves.
func TestTransportSelection(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "m")
	if r := do(t, h1Client, "GET", base+"/sub?id="+ch, nil); r.status != 200 || r.body != "m" || r.header.Get("Etag") != "0" {
		t.Fatalf("plain GET: %d %q %v", r.status, r.body, r.header)
	}
	r := do(t, h1Client, "GET", base+"/s/lp?id="+ch, nil, "Accept", "text/event-stream")
	if r.status != 406 || !strings.Contains(r.body, "does not serve eventsource") || !strings.Contains(r.body, "long-poll") ||
		r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("EventSource on a long-poll location: %d %q %v", r.status, r.body, r.header)
	}
	if r := do(t, h1Client, "GET", base+"/s/small?id="+ch, nil); r.status != 406 {
		t.Fatalf("a plain GET on a streams-only location: %d %q", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://localhost:9080/s/lp?id="+ch, nil)
	if err == nil || resp == nil || resp.StatusCode != 406 {
		t.Fatalf("a WebSocket on a long-poll location: %v %v", err, resp)
	}
}

// TestAllowCredentials: with allow_credentials (here by nchan's name), a
// long-poll, an EventSource stream and a preflight from the allowed origin
// name that origin and allow credentials, as a browser requires of a
// cross-origin request with cookies; another origin is not named; a
// location without it answers as before.
func TestAllowCredentials(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "m1")
	check := func(what string, h http.Header, origin, creds string) {
		t.Helper()
		if got := h.Get("Access-Control-Allow-Origin"); got != origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", what, got, origin)
		}
		if got := h.Get("Access-Control-Allow-Credentials"); got != creds {
			t.Errorf("%s: Access-Control-Allow-Credentials %q, want %q", what, got, creds)
		}
	}
	r := do(t, h1Client, "GET", base+"/s/cred?id="+ch, nil, "Origin", "https://app.example")
	if r.status != 200 || r.body != "m1" {
		t.Fatalf("long-poll: %d %q", r.status, r.body)
	}
	check("long-poll", r.header, "https://app.example", "true")
	if !slices.Contains(r.header.Values("Vary"), "Origin") {
		t.Errorf("long-poll: Vary %q lacks Origin", r.header.Values("Vary"))
	}
	r = do(t, h1Client, "GET", base+"/s/cred?id="+ch, nil, "Origin", "https://evil.example")
	check("long-poll from another origin", r.header, "https://app.example", "true")
	s := openSSE(t, h1Client, base+"/s/cred?id="+ch, "Origin", "https://app.example")
	check("EventSource", s.resp.Header, "https://app.example", "true")
	s.close()
	r = do(t, h1Client, "OPTIONS", base+"/s/cred?id="+ch, nil, "Origin", "https://app.example")
	check("preflight", r.header, "https://app.example", "true")
	r = do(t, h1Client, "GET", base+"/sub?id="+ch, nil, "Origin", "https://app.example")
	check("a location without allow_credentials", r.header, "*", "")
}

// TestWebSocketDeflateOncePerPublication: three WebSockets that negotiate
// permessage-deflate each get a publication as one compressed frame (RSV1
// set, shorter than the body), and the frame was prepared once for the
// three.
func TestWebSocketDeflateOncePerPublication(t *testing.T) { forEachStore(t, testWebSocketDeflateOnce) }

func testWebSocketDeflateOnce(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	var conns []*rawConn
	for range 3 {
		c := rawStream(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
			"Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n\r\n")
		if head := c.head(); !strings.HasPrefix(head, "HTTP/1.1 101") || !strings.Contains(head, "permessage-deflate") {
			t.Fatalf("handshake: %q", head)
		}
		conns = append(conns, c)
	}
	waitFor(t, "three WebSockets", func() bool { return waiters(t, "/"+ch) == 3 })
	before := preparedFrames.Load()
	big := strings.Repeat("compressible ", 200)
	publish(t, "/pub", ch, big)
	for i, c := range conns {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			t.Fatal(err)
		}
		n := int(h[1] & 0x7f)
		if n == 126 {
			var l [2]byte
			if _, err := io.ReadFull(c.br, l[:]); err != nil {
				t.Fatal(err)
			}
			n = int(l[0])<<8 | int(l[1])
		}
		if h[0] != 0x80|0x40|0x1 || n >= len(big)/2 {
			t.Fatalf("WebSocket %d: frame header %#x, %d payload bytes for a %d-byte body, want a compressed text frame",
				i, h[0], n, len(big))
		}
	}
	if n := preparedFrames.Load() - before; n != 1 {
		t.Fatalf("the frame was prepared %d times for three subscribers, want once", n)
	}
}

// TestWebSocketRawFrames: on a connection without permessage-deflate the
// stream writes its frames itself (no gorilla prepared message is made),
// and every payload length form (7, 16 and 64 bits) and both opcodes
// arrive intact, with and without ws+meta.nchan.
func TestWebSocketRawFrames(t *testing.T) {
	startMain(t)
	ch := chanName(t, "raw")
	plain := openWS(t, base+"/sub?id="+ch, nil)
	meta := openWS(t, base+"/sub?id="+ch, &websocket.DialOptions{Subprotocols: []string{"ws+meta.nchan"}})
	plain.SetReadLimit(1 << 20)
	meta.SetReadLimit(1 << 20)
	waitFor(t, "two WebSockets", func() bool { return waiters(t, "/"+ch) == 2 })
	before := preparedFrames.Load()
	for _, n := range []int{1, 125, 126, 65535, 65536, 70000} {
		body := strings.Repeat("x", n)
		publish(t, "/pub", ch, body)
		if typ, got := wsRead(t, plain); typ != websocket.MessageText || got != body {
			t.Fatalf("%d bytes: %v frame of %d bytes", n, typ, len(got))
		}
		typ, got := wsRead(t, meta)
		if head, rest, _ := strings.Cut(got, "\n\n"); typ != websocket.MessageText || !strings.HasPrefix(head, "id: ") || rest != body {
			t.Fatalf("%d bytes with ws+meta.nchan: %v frame %.40q", n, typ, got)
		}
	}
	do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader("\x00\x01\x02"), "Content-Type", "application/octet-stream")
	if typ, got := wsRead(t, plain); typ != websocket.MessageBinary || got != "\x00\x01\x02" {
		t.Fatalf("binary: %v %q", typ, got)
	}
	if typ, got := wsRead(t, meta); typ != websocket.MessageBinary || !strings.HasSuffix(got, "\ncontent-type: application/octet-stream\n\n\x00\x01\x02") {
		t.Fatalf("binary with ws+meta.nchan: %v %q", typ, got)
	}
	if n := preparedFrames.Load() - before; n != 0 {
		t.Fatalf("%d gorilla prepared messages made for connections without permessage-deflate", n)
	}
}

// TestWebSocketParked: a WebSocket of raw frames on TCP that waits with
// nothing queued is parked, and a publication writes its frame from the
// publishing goroutine. When a parked write fills the socket and leaves
// part of a frame, the pong gorilla writes for a client's ping goes after
// the rest of that frame, never inside it: once the client reads, every
// message arrives whole and in order, and the ping gets its pong.
func TestWebSocketParked(t *testing.T) {
	startMain(t)
	ch := chanName(t, "wsp")
	parked := parkedStreams.Load()
	c := openWS(t, base+"/sub?id="+ch, nil)
	c.SetReadLimit(1 << 20)
	waitFor(t, "the WebSocket to park", func() bool { return parkedStreams.Load() > parked })
	sends := parkedSends.Load()
	publish(t, "/pub", ch, "one")
	if _, got := wsRead(t, c); got != "one" {
		t.Fatalf("first message: %q", got)
	}
	if n := parkedSends.Load() - sends; n != 1 {
		t.Fatalf("%d parked writes for a message to a parked WebSocket, want 1", n)
	}

	// The client stops reading: publish until a parked write is short.
	short := parkedShort.Load()
	var sent []string
	for i := 0; parkedShort.Load() == short; i++ {
		if i == 200 { // 50 MiB: far past any socket buffer
			t.Fatal("no parked write was ever short")
		}
		body := strings.Repeat(string(rune('a'+i%26)), 256<<10)
		publish(t, "/pub", ch, body)
		sent = append(sent, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(ctx) }() // its pong comes once the client reads
	for i, want := range sent {
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != want {
			t.Fatalf("message %d of %d: %v, %d bytes, err %v", i+1, len(sent), typ, len(got), err)
		}
	}
	go func() { _, _, _ = c.Read(ctx) }() // reads the pong
	if err := <-pinged; err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// TestWebSocketIdleReader: the goroutine that reads an idle WebSocket's
// client waits for its first bytes in waitReadable, not in gorilla's deep
// read, so its stack stays at the smallest size (about 3 KB less per idle
// connection in bench/streaming.sh idle); what the client then sends is
// still read: a ping is answered, a message reaches the stream, and a
// frame on a subscribe-only location closes it with 1008.
func TestWebSocketIdleReader(t *testing.T) {
	startMain(t)
	ch := chanName(t, "idle")
	c := openWS(t, base+"/sub?id="+ch, nil)
	waitFor(t, "the WebSocket", func() bool { return waiters(t, "/"+ch) == 1 })
	waitFor(t, "a reader in waitReadable", func() bool { return idleWSReaders() > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 1)
	go func() { // reads the pong, then the message
		_, data, err := c.Read(ctx)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(data)
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping after the idle wait: %v", err)
	}
	publish(t, "/pub", ch, "after the ping")
	if m := <-got; m != "after the ping" {
		t.Fatalf("got %q", m)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if code, reason := wsClosed(t, c); code != websocket.StatusPolicyViolation || reason != "Publishing not allowed." {
		t.Fatalf("a frame after the idle wait: %d %q", code, reason)
	}
}

// idleWSReaders counts the WebSocket readers waiting in waitReadable.
func idleWSReaders() int { return goroutinesIn(".readWebSocket(", ".waitReadable(") }

// TestWebSocketAfterClientPing: gorilla answers a client's ping with a
// pong written under a one-second write deadline, which it leaves on the
// connection; the raw frames written after it must not inherit it (before
// wsConn kept gorilla's deadlines to gorilla's writes, the stream's next
// frame after that second failed and the stream ended). The test pings,
// lets that second pass (a deadline, not an event: there is nothing to
// wait on), then publishes: the message arrives, and the publisher's
// write that must not block sent it whole (before gorilla's deadlines
// were taken off a parking connection after its writes, that write failed
// on the passed deadline and the stream's goroutine had to be woken to
// send it).
func TestWebSocketAfterClientPing(t *testing.T) {
	startMain(t)
	ch := chanName(t, "wspong")
	parked := parkedStreams.Load()
	c := openWS(t, base+"/sub?id="+ch, nil)
	waitFor(t, "the WebSocket", func() bool { return waiters(t, "/"+ch) == 1 })
	publish(t, "/pub", ch, "before") // the stream's own deadline is set now
	if _, m := wsRead(t, c); m != "before" {
		t.Fatalf("got %q", m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := make(chan string, 1)
	go func() {
		_, data, err := c.Read(ctx) // reads the pong, then the message
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(data)
	}()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // past the pong's write deadline
	waitFor(t, "the WebSocket to park", func() bool { return parkedStreams.Load() > parked })
	short, sends := parkedShort.Load(), parkedSends.Load()
	publish(t, "/pub", ch, "after the pong")
	if m := <-got; m != "after the pong" {
		t.Fatalf("got %q", m)
	}
	if n := parkedShort.Load() - short; n != 0 {
		t.Fatalf("%d parked writes failed after the pong's deadline passed", n)
	}
	if n := parkedSends.Load() - sends; n != 1 {
		t.Fatalf("%d parked writes for the message, want 1", n)
	}
}

// TestParkedStreamAfterWriteIdle: the write_idle deadline a stream sets
// on its connection before its own writes (here, of its backlog) is taken
// off when it detaches: a message after that deadline passed is still
// sent whole by the publisher (before, its write failed on the deadline,
// and the stream's goroutine was woken to send it).
func TestParkedStreamAfterWriteIdle(t *testing.T) {
	tester := startMain(t)
	load(tester, strings.Replace(mainConfig, "read_body 2s", "read_body 2s\n\t\t\twrite_idle 1s", 1))
	defer load(tester, mainConfig)
	ch := chanName(t, "wi")
	publish(t, "/pub", ch, "backlog")
	detached := detachedStreams.Load()
	c := rawStream(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nLast-Event-ID: 1:0\r\n\r\n")
	c.head()
	c.until(t, "data: backlog\n\n")
	waitFor(t, "the stream to detach", func() bool { return detachedStreams.Load() > detached })
	time.Sleep(1200 * time.Millisecond) // past the deadline (nothing to wait on)
	short, sends := parkedShort.Load(), parkedSends.Load()
	publish(t, "/pub", ch, "after write_idle")
	c.until(t, "data: after write_idle\n\n")
	if n := parkedShort.Load() - short; n != 0 {
		t.Fatalf("%d parked writes failed after write_idle passed", n)
	}
	if n := parkedSends.Load() - sends; n != 1 {
		t.Fatalf("%d parked writes for the message, want 1", n)
	}
}

// TestWebSocketPongWhileBehind: a client pings while the server's writes
// to it are stuck on its full socket, then reads nothing for longer than
// gorilla's default pong deadline (1 s). The pong waits within the
// stream's write budget instead, so the ping is answered once the client
// reads, later pings are answered, and a DELETE still ends the stream with
// nchan's close frame (before, the pong's write timed out, gorilla's
// writer failed for good, and no pong, ping or close frame was written on
// the connection again while the stream's own frames still went).
func TestWebSocketPongWhileBehind(t *testing.T) {
	startMain(t)
	ch := chanName(t, "wspb")
	c := openWS(t, base+"/sub?id="+ch, nil)
	c.SetReadLimit(1 << 20)
	waitFor(t, "the WebSocket", func() bool { return waiters(t, "/"+ch) == 1 })
	short := parkedShort.Load()
	var sent []string
	for i := 0; parkedShort.Load() == short; i++ { // until the client's socket is full
		if i == 200 {
			t.Fatal("no parked write was ever short")
		}
		sent = append(sent, strings.Repeat(string(rune('a'+i%26)), 256<<10))
		publish(t, "/pub", ch, sent[i])
	}
	sent = append(sent, strings.Repeat("Z", 256<<10)) // for the stream's own write to block on
	publish(t, "/pub", ch, sent[len(sent)-1])
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pinged := make(chan error, 1)
	go func() { pinged <- c.Ping(ctx) }()
	time.Sleep(1500 * time.Millisecond) // past gorilla's pong deadline (nothing to wait on)
	for i, want := range sent {
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != want {
			t.Fatalf("message %d of %d: %v, %d bytes, err %v", i+1, len(sent), typ, len(got), err)
		}
	}
	readErr := make(chan error, 1)
	go func() { _, _, err := c.Read(ctx); readErr <- err }() // reads the pongs, then the close
	if err := <-pinged; err != nil {
		t.Fatalf("the ping sent while behind: %v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("a ping after it: %v", err)
	}
	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
	var ce websocket.CloseError
	if err := <-readErr; !asCloseError(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "410 Gone" {
		t.Fatalf("after DELETE the stream ended with %v, want close 1001 \"410 Gone\"", err)
	}
}

// TestNarrowDeflateWindowDeclined: a client whose only permessage-deflate
// offer asks for server_max_window_bits under 15 (a window it can inflate
// with) is answered without the extension (RFC 7692, 7.1.2.1: the server
// accepts the parameter or declines the offer); gorilla accepted the offer
// without reading it and compressed with a 15-bit window. A client that
// also offers plain permessage-deflate gets it.
func TestNarrowDeflateWindowDeclined(t *testing.T) {
	startMain(t)
	ch := chanName(t, "d")
	for _, tc := range []struct {
		offer    string
		deflated bool
	}{
		{"permessage-deflate; server_max_window_bits=10", false},
		{"permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		{"permessage-deflate; client_max_window_bits", true},
	} {
		c := rawStream(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: "+tc.offer+"\r\n\r\n")
		head := c.head()
		if !strings.Contains(head, " 101 ") || strings.Contains(head, "permessage-deflate") != tc.deflated {
			t.Errorf("offer %q: deflate agreed %v, want %v:\n%s", tc.offer, strings.Contains(head, "permessage-deflate"), tc.deflated, head)
		}
		_ = c.conn.Close()
	}
}
