package caddypush

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
)

// TestWebSocketPublisher publishes over a WebSocket to a publisher
// location, as to nchan_publisher: each text or binary frame is published
// (a text frame with the handshake's Content-Type and
// X-EventSource-Event, a binary one as application/octet-stream, an empty
// one too) and answered with a text frame holding the channel info, in
// the format the handshake's Accept asks for; the socket itself is no
// subscriber, survives a config reload, and closes cleanly. A location
// that publishes one way refuses the other with 403; limits close the
// socket as on a pub/sub location.
func TestWebSocketPublisher(t *testing.T) { forEachStore(t, testWebSocketPublisher) }

func testWebSocketPublisher(t *testing.T) {
	tester := startMain(t)
	ch := chanName(t, "a")
	subscribers := func(ch string) int { return waiters(t, "/"+ch) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listener := openSSE(t, h1Client, base+"/sub?id="+ch)
	waitFor(t, "the listener subscribed", func() bool { return subscribers(ch) == 1 })
	created := metricValue(t, `caddy_push_publishes_total{status="201"}`)

	pub := openWS(t, base+"/pub?id="+ch, &websocket.DialOptions{HTTPHeader: http.Header{
		"Content-Type": {"text/x-chat"}, "X-Eventsource-Event": {"chat"}}})
	send := func(c *websocket.Conn, typ websocket.MessageType, data string) string {
		t.Helper()
		if err := c.Write(ctx, typ, []byte(data)); err != nil {
			t.Fatal(err)
		}
		typ, reply := wsRead(t, c)
		if typ != websocket.MessageText {
			t.Fatalf("the answer to %q is a %v frame", data, typ)
		}
		return roundRequested(reply)
	}
	info := func(n int) string {
		return "queued messages: " + itoa(n) + "\r\nlast requested: 0 sec. ago (-1=never)\r\nactive subscribers: 1\r\n"
	}
	if got := send(pub, websocket.MessageText, "hello"); got != info(1) {
		t.Fatalf("the answer to a text frame: %q, want %q", got, info(1))
	}
	if ev := listener.message(t); ev.data != "hello" || ev.event != "chat" {
		t.Fatalf("the listener got %+v", ev)
	}
	if got := send(pub, websocket.MessageBinary, "\x00\x01"); got != info(2) {
		t.Fatalf("the answer to a binary frame: %q", got)
	}
	if got := send(pub, websocket.MessageText, ""); got != info(3) {
		t.Fatalf("the answer to an empty frame: %q", got)
	}
	for range 2 {
		listener.message(t)
	}
	// The messages as a long-poll reads them: the types the frames gave.
	r := do(t, h1Client, "GET", base+"/sub?id="+ch, nil)
	if r.body != "hello" || r.header.Get("Content-Type") != "text/x-chat" {
		t.Fatalf("the text frame's message: %q %q", r.body, r.header.Get("Content-Type"))
	}
	r = do(t, h1Client, "GET", base+"/sub?id="+ch, nil, r.cursor().headers()...)
	if r.body != "\x00\x01" || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("the binary frame's message: %q %q", r.body, r.header.Get("Content-Type"))
	}

	// JSON when the handshake accepts it; the socket outlives a reload.
	pj := openWS(t, base+"/pub?id="+ch, &websocket.DialOptions{HTTPHeader: http.Header{"Accept": {"application/json"}}})
	load(tester, current.config)
	var st adminStats
	adminJSON(t, "GET", "/push/stats", &st)
	if n := metricValue(t, "caddy_push_publishing_websockets"); n != 2 || st.PublishingWebSockets != 2 {
		t.Fatalf("caddy_push_publishing_websockets %v, publishing_websockets %d with two publishing sockets open",
			n, st.PublishingWebSockets)
	}
	var got struct{ Messages, Subscribers int }
	if err := json.Unmarshal([]byte(send(pj, websocket.MessageText, "json")), &got); err != nil ||
		got.Messages != 4 || got.Subscribers != 1 {
		t.Fatalf("the JSON answer: %+v %v", got, err)
	}
	if ev := listener.message(t); ev.data != "json" {
		t.Fatalf("the listener got %+v", ev)
	}
	if n := metricValue(t, `caddy_push_publishes_total{status="201"}`); n != max(created, 0)+4 {
		t.Fatalf("publications counted 201: %v, want %v", n, max(created, 0)+4)
	}
	for _, c := range []*websocket.Conn{pub, pj} {
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Fatalf("closing a publishing socket: %v", err)
		}
	}
	waitFor(t, "the publishing sockets uncounted", func() bool {
		return metricValue(t, "caddy_push_publishing_websockets") == 0
	})

	// One way only: the other is refused with 403, as nchan does.
	if r := do(t, h1Client, "POST", base+"/p/ws?id="+ch, strings.NewReader("x")); r.status != 403 ||
		!strings.Contains(r.body, "WebSocket only") {
		t.Fatalf("a POST to a websocket publisher: %d %q", r.status, r.body)
	}
	_, resp, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/p/http?id="+ch, nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("a WebSocket to an http publisher: %v %v", resp, err)
	}
	if r := do(t, h1Client, "POST", base+"/p/http?id="+ch, strings.NewReader("over http")); r.status != 201 {
		t.Fatalf("a POST to an http publisher: %d %q", r.status, r.body)
	}
	small := openWS(t, base+"/p/ws?id="+ch, nil)
	if got := send(small, websocket.MessageText, "small"); !strings.HasPrefix(got, "queued messages: 6\r\n") {
		t.Fatalf("the answer on a websocket publisher: %q", got)
	}
	if err := small.Write(ctx, websocket.MessageText, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	if code, _ := wsClosed(t, small); code != websocket.StatusMessageTooBig {
		t.Fatalf("an over-size frame closed with %d, want 1009", code)
	}
	for _, want := range []string{"over http", "small"} {
		if ev := listener.message(t); ev.data != want {
			t.Fatalf("the listener got %+v, want %q", ev, want)
		}
	}
	if n := subscribers(ch); n != 1 {
		t.Fatalf("%d subscribers, want the listener alone", n)
	}
}

// TestWebSocketCloseEcho: a client's close frame is answered with its
// code and reason, on a subscriber's stream and on a publishing socket,
// as nchan answers it (gorilla's own answer dropped the reason).
func TestWebSocketCloseEcho(t *testing.T) {
	startMain(t)
	for _, path := range []string{"/sub", "/pub"} {
		c, _, err := gorilla.DefaultDialer.Dial("ws://localhost:9080"+path+"?id="+chanName(t, "echo"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(4000, "bye"), time.Now().Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		var ce *gorilla.CloseError
		if _, _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "bye" {
			t.Fatalf("%s: the answer to close 4000 \"bye\": %v", path, err)
		}
	}
}

// TestWebSocketPublisherPanic: a frame that makes a publishing socket's
// reader panic ends that socket (logged, the process goes on), uncounts
// it and gives its body back to max_body_memory; another socket publishes
// as before.
func TestWebSocketPublisherPanic(t *testing.T) {
	startMain(t)
	ch := chanName(t, "panic")
	frame := func(data []byte) {
		if string(data) == "panic now" {
			panic("a test's panic in a publishing websocket's reader")
		}
	}
	testHookFrame.Store(&frame)
	defer testHookFrame.Store(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pv := openWS(t, base+"/pub?id="+ch, nil)
	if err := pv.Write(ctx, websocket.MessageText, []byte("panic now")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := pv.Read(ctx); err == nil {
		t.Fatalf("the panicking socket answered %q", data)
	}
	waitFor(t, "the socket uncounted and its body released", func() bool {
		return publishingSockets.len() == 0 && bodies.used.Load() == 0
	})
	pw := openWS(t, base+"/pub?id="+ch, nil)
	if err := pw.Write(ctx, websocket.MessageText, []byte("after the panic")); err != nil {
		t.Fatal(err)
	}
	if _, got := wsRead(t, pw); !strings.HasPrefix(got, "queued messages: 1\r\n") {
		t.Fatalf("after the panic: %q", got)
	}
}

// TestPublisherWebSocketAgreesMeta: a WebSocket opened on a publisher location offering ws+meta.nchan: nchan
// 1.3.6 agrees the subprotocol (its publisher shares the subscriber's
// handshake), and a browser's `new WebSocket(url, 'ws+meta.nchan')` opens.
// caddy-push's publisher upgrader offered no subprotocol, so the 101 has no
// Sec-WebSocket-Protocol and Chromium fails the handshake ("Sent non-empty
// 'Sec-WebSocket-Protocol' header but no response was received").
func TestPublisherWebSocketAgreesMeta(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	c := rawStream(t, "GET /pub?id="+ch+" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"+
		"Sec-WebSocket-Protocol: ws+meta.nchan\r\n\r\n")
	h := c.head()
	if !strings.HasPrefix(h, "HTTP/1.1 101") {
		t.Fatalf("no upgrade: %q", h)
	}
	if got := headerOf(h, "Sec-WebSocket-Protocol"); got != "ws+meta.nchan" {
		t.Fatalf("Sec-WebSocket-Protocol %q, want ws+meta.nchan (as nchan_publisher); head:\n%s", got, h)
	}
}
