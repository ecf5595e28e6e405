package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddypush/caddy-push"
)

// testConfig is a small load against base URLs, set up as main does.
func testConfig(t *testing.T, scenario, server, transport, pub, sub string) *config {
	t.Helper()
	c := &config{
		scenario: scenario, server: server, transport: transport, pub: pub, sub: sub,
		subs: 20, rounds: 10, publishers: 4, channels: 3, rate: 2000, duration: 500 * time.Millisecond,
		drain: 5 * time.Second, settle: 10 * time.Millisecond, hold: 100 * time.Millisecond, msgSize: 64,
		window: 50, useInfo: true, waitTO: 10 * time.Second, maxDials: 16, maxReconnects: 1,
		client: "raw", pids: []int{os.Getpid()}, children: false,
	}
	if err := setup(c); err != nil {
		t.Fatal(err)
	}
	// fresh channels for every run, also under -count
	c.runID = fmt.Sprintf("t%d-%s", runs.Add(1), strings.ReplaceAll(t.Name(), "/", "-"))
	return c
}

// runs numbers the test configs.
var runs atomic.Int64

// check runs a scenario and fails on an error, a loss or a duplicate.
func check(t *testing.T, c *config) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := run(ctx, c)
	line, _ := r.MarshalJSON()
	if err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	for _, k := range []string{"lost", "duplicated", "out_of_order", "bad_bodies"} {
		if v, ok := r.get(k).(int64); ok && v != 0 {
			t.Fatalf("%s = %d: %s", k, v, line)
		}
	}
	if v, ok := r.get("delivered").(int64); ok && v == 0 {
		t.Fatalf("nothing delivered: %s", line)
	}
	t.Logf("%s", line)
	return r
}

// TestScenariosAgainstCaddy runs every long-poll scenario briefly against a
// real in-process Caddy (its own ports, apart from the other packages'
// tests).
func TestScenariosAgainstCaddy(t *testing.T) {
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: 2997})
	tester.InitServer(`{
	admin localhost:2997
	http_port 9083
	https_port 9445
	skip_install_trust
}
:9083 {
	push_publisher /pub {
		max_message_buffer_length 500
	}
	push_publisher /pub_small {
		max_message_buffer_length 4
	}
	push_subscriber /sub
	push_subscriber /sub2
	push_subscriber /sub_all long-poll {
		longpoll_multipart_response on
	}
	push_subscriber /sub_stream eventsource websocket {
		stream_queue_size 64k
	}
}
`, "caddyfile")
	for _, sc := range []string{"fanout", "publish", "idle", "stream", "proto", "rate", "probe"} {
		t.Run(sc, func(t *testing.T) {
			// two subscriber URLs: the subscribers are spread over both
			check(t, testConfig(t, sc, "push", "longpoll", "http://localhost:9083/pub?id=%s",
				"http://localhost:9083/sub?id=%s,http://localhost:9083/sub2?id=%s"))
		})
	}
	t.Run("publish/websocket", func(t *testing.T) {
		r := check(t, testConfig(t, "publish", "push", "websocket", "http://localhost:9083/pub?id=%s",
			"http://localhost:9083/sub?id=%s"))
		if ok, _ := r.get("publishes_ok").(int64); ok == 0 || r.get("publish_errors") != int64(0) {
			t.Fatalf("publishing over WebSocket: %v published, %v errors", r.get("publishes_ok"), r.get("publish_errors"))
		}
	})
	// catchup: 3 channels of 10 messages, taken by 20 subscribers each one
	// per poll, then from multipart answers (one per subscriber).
	for sub, perRequest := range map[string]float64{"/sub": 1, "/sub_all": 10} {
		t.Run("catchup"+sub, func(t *testing.T) {
			r := check(t, testConfig(t, "catchup", "push", "longpoll", "http://localhost:9083/pub?id=%s",
				"http://localhost:9083"+sub+"?id=%s"))
			if got := r.get("messages_per_request"); got != perRequest || r.get("delivered") != int64(20*30) {
				t.Fatalf("%v messages per request (want %v), %v delivered", got, perRequest, r.get("delivered"))
			}
		})
	}
	// -pub-websocket: the same fan-out and rate loads with each
	// publication a frame on a publisher's WebSocket.
	for _, sc := range []string{"fanout", "rate"} {
		t.Run(sc+"/pub-websocket", func(t *testing.T) {
			c := testConfig(t, sc, "push", "eventsource", "http://localhost:9083/pub?id=%s",
				"http://localhost:9083/sub_stream?id=%s")
			c.pubWebSocket = true
			c.publish, c.closePublisher = newPublisher(c)
			r := check(t, c)
			if r.get("publisher") != "websocket" || r.get("publish_errors") != 0 {
				t.Fatalf("publisher %v, %v publish errors", r.get("publisher"), r.get("publish_errors"))
			}
		})
	}
	// slow: 16 MiB past a subscriber that never reads; the readers get
	// everything and the server closes the non-reader's connection.
	for _, tr := range []string{"eventsource", "websocket"} {
		t.Run("slow/"+tr, func(t *testing.T) {
			c := testConfig(t, "slow", "push", tr, "http://localhost:9083/pub_small?id=%s",
				"http://localhost:9083/sub_stream?id=%s")
			// The readers stay within the queue (64 KiB) whatever the
			// scheduling: a reader 2 messages behind may have up to
			// 2 x 3 counted against it (the batch whose write returned
			// counts until the stream says it was sent, and as many
			// more may be published meanwhile): 6 x (8 KiB + 64) < 64
			// KiB. With 16 KiB messages a loaded machine cut a reader
			// now and then (1013, fell behind).
			c.subs, c.msgSize, c.total, c.slowSubs, c.window = 3, 8<<10, 16<<20, 1, 2
			r := check(t, c)
			if cut, ok := r.get("slow_cut").(bool); !ok || !cut {
				t.Fatalf("the server did not close the non-reader's connection (slow_cut %v)", r.get("slow_cut"))
			}
		})
	}
}

// fakeNchan is a small in-memory server of nchan's streaming protocol:
// POST /pub?id= publishes, GET /pub?id= answers channel info, any other
// GET is an EventSource or (with Upgrade) a WebSocket subscriber. Event
// ids are the message's index in the channel's history; an EventSource
// with Last-Event-ID resumes after it. With dropEvery > 0 an EventSource
// is closed after that many messages (to exercise resuming).
type fakeNchan struct {
	dropEvery int
	mu        sync.Mutex
	history   map[string][][]byte
	subs      map[string]map[chan []byte]bool
}

func (f *fakeNchan) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	f.mu.Lock()
	if f.subs == nil {
		f.subs, f.history = map[string]map[chan []byte]bool{}, map[string][][]byte{}
	}
	if f.subs[id] == nil {
		f.subs[id] = map[chan []byte]bool{}
	}
	set := f.subs[id]
	f.mu.Unlock()
	switch {
	case r.URL.Path == "/pub" && r.Method == "POST":
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.history[id] = append(f.history[id], body)
		for ch := range set {
			ch <- body
		}
		f.mu.Unlock()
		w.WriteHeader(201)
	case r.URL.Path == "/pub":
		f.mu.Lock()
		fmt.Fprintf(w, `{"subscribers": %d}`, len(set))
		f.mu.Unlock()
	case r.Header.Get("Upgrade") == "websocket":
		conn, brw, _ := w.(http.Hijacker).Hijack()
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		f.serve(r.Context(), id, -1, set, func(_ int, m []byte) error {
			// every message in two fragments with a ping between them
			h := len(m) / 2
			_, err := conn.Write(append(append(frame(false, wsText, m[:h], nil), frame(true, wsPing, []byte("p"), nil)...),
				frame(true, wsContinuation, m[h:], nil)...))
			return err
		})
	default:
		after := -1
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			fmt.Sscanf(v, "1:%d", &after)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, ": hi\n\n")
		w.(http.Flusher).Flush()
		sent := 0
		f.serve(r.Context(), id, after, set, func(n int, m []byte) error {
			if _, err := fmt.Fprintf(w, "id: 1:%d\ndata: %s\n\nevent: ping\ndata:\n\n", n, m); err != nil {
				return err
			}
			w.(http.Flusher).Flush()
			if sent++; f.dropEvery > 0 && sent == f.dropEvery {
				return io.EOF
			}
			return nil
		})
	}
}

// serve sends a subscriber the messages after history index `after` (none
// if -1), then every new one, with its history index, until send fails.
func (f *fakeNchan) serve(ctx context.Context, id string, after int, set map[chan []byte]bool, send func(int, []byte) error) {
	ch := make(chan []byte, 1000)
	f.mu.Lock()
	n := len(f.history[id])
	var backlog [][]byte
	if after >= 0 && after < n {
		backlog = append(backlog, f.history[id][after+1:]...)
		n = after + 1
	}
	set[ch] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(set, ch)
		f.mu.Unlock()
	}()
	for _, m := range backlog {
		if send(n, m) != nil {
			return
		}
		n++
	}
	for {
		select {
		case m := <-ch:
			if send(n, m) != nil {
				return
			}
			n++
		case <-ctx.Done():
			return
		}
	}
}

// TestStreamTransports drives the streaming scenarios over EventSource and
// WebSocket against fakeNchan.
func TestStreamTransports(t *testing.T) {
	srv := httptest.NewServer(&fakeNchan{})
	defer srv.Close()
	for _, tr := range []string{"eventsource", "websocket"} {
		for _, sc := range []string{"fanout", "rate", "idle", "probe"} {
			t.Run(tr+"/"+sc, func(t *testing.T) {
				check(t, testConfig(t, sc, "push", tr, srv.URL+"/pub?id=%s", srv.URL+"/sub?id=%s,"+srv.URL+"/sub2?id=%s"))
			})
		}
	}
}

// TestEventSourceResumes: the server drops every stream after 7 messages;
// the subscribers reconnect with Last-Event-ID and miss nothing.
func TestEventSourceResumes(t *testing.T) {
	srv := httptest.NewServer(&fakeNchan{dropEvery: 7})
	defer srv.Close()
	c := testConfig(t, "fanout", "push", "eventsource", srv.URL+"/pub?id=%s", srv.URL+"/sub?id=%s")
	c.rounds, c.maxReconnects = 30, 10
	r := check(t, c)
	if n, _ := r.get("reconnects").(int64); n < 20*4 {
		t.Fatalf("%d reconnects, want at least 80", n)
	}
}

func TestFlags(t *testing.T) {
	for _, bad := range []config{
		{scenario: "nope", server: "push", transport: "longpoll", pub: "%s", sub: "%s"},
		{scenario: "fanout", server: "push", transport: "longpoll", pub: "x", sub: "%s"},
		{scenario: "fanout", server: "centrifugo", transport: "longpoll"},
		{scenario: "publish", server: "push", transport: "eventsource", pub: "%s", sub: "%s"},
		{scenario: "publish", server: "push", transport: "websocket", pub: "%s", sub: "%s", pubWebSocket: true},
		{scenario: "rate", server: "centrifugo", transport: "websocket", pubWebSocket: true},
		{scenario: "fanout", server: "push", transport: "carrier-pigeon", pub: "%s", sub: "%s", client: "raw", maxDials: 1},
	} {
		if err := setup(&bad); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}
