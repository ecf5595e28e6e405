package caddypush

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"

	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// TestFirstMessageNumbers: nchan's first_message numbers: -2 starts at the
// 2nd newest stored message (the last 2), 2 at the 2nd oldest; a stream
// gets everything from there, a long-poll the first.
func TestFirstMessageNumbers(t *testing.T) { forEachStore(t, testFirstMessageNumbers) }

func testFirstMessageNumbers(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	for i := 1; i <= 5; i++ {
		publish(t, "/pub", ch, fmt.Sprint("m", i))
	}
	for _, tt := range []struct{ path, first, second string }{
		{"/s/tail", "m4", "m5"},
		{"/s/second", "m2", "m3"},
	} {
		s := openSSE(t, h1Client, base+tt.path+"?id="+ch)
		if a, b := s.message(t), s.message(t); a.data != tt.first || b.data != tt.second {
			t.Fatalf("%s: EventSource got %q %q, want %q %q", tt.path, a.data, b.data, tt.first, tt.second)
		}
		s.close()
		if r := do(t, h1Client, "GET", base+tt.path+"?id="+ch, nil); r.body != tt.first {
			t.Fatalf("%s: long-poll got %q, want %q", tt.path, r.body, tt.first)
		}
	}
}

// TestSlowStreamIsCut: a stream whose client reads nothing (an EventSource
// and a WebSocket here) is cut once what waits for it passes its
// stream_queue_size (64 KiB here), so it holds no more than that, while
// the stream beside it gets every message; the channel then counts one
// subscriber, and the connections of the two that read nothing are
// closed within seconds, not when Caddy's write_idle_timeout (1 minute)
// fails the write they are stuck in. 16 MB go out, more than the kernel's
// socket buffers take before the slow connections stop writes. A stream
// over HTTP/2 (never parked: every message goes through its queue) reads
// too and gets every message: what it took and wrote no longer counts
// against its queue.
func TestSlowStreamIsCut(t *testing.T) { forEachStore(t, testSlowStreamIsCut) }

func testSlowStreamIsCut(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	readers := []*sseStream{openSSE(t, h1Client, base+"/s/small?id="+ch), openSSE(t, h2Client, base+"/s/small?id="+ch)}
	var slow []net.Conn
	for _, head := range []string{
		"Accept: text/event-stream\r\n",
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
	} {
		c, err := net.Dial("tcp", "localhost:9080")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /s/small?id=%s HTTP/1.1\r\nHost: x\r\n%s\r\n", ch, head)
		slow = append(slow, c)
	}
	waitFor(t, "four streams", func() bool { return waiters(t, "/"+ch) == 4 })
	const n = 1000
	body := strings.Repeat("x", 16<<10)
	received := make([]chan int, len(readers))
	for k, fast := range readers {
		received[k] = make(chan int, n)
		go func() {
			defer close(received[k])
			for i := 0; i < n; {
				ev, err := fast.next()
				if err != nil {
					return
				}
				if ev.hasData {
					i++
					received[k] <- i
				}
			}
		}()
	}
	got := make([]int, len(readers))
	for i := range n {
		for k := range readers {
			// The reading streams keep up: at most one message unread. The
			// queue counts what the stream took until its write returns,
			// which may be after the client read it: 3 messages here.
			for got[k] < i-1 {
				r, ok := <-received[k]
				if !ok {
					t.Fatalf("reading stream %d ended after %d of %d", k, got[k], n)
				}
				got[k] = r
			}
		}
		publish(t, "/pub/big", ch, fmt.Sprint(i, body))
	}
	for k := range readers {
		for r := range received[k] {
			got[k] = r
		}
		if got[k] != n {
			t.Fatalf("reading stream %d got %d of %d", k, got[k], n)
		}
	}
	waitFor(t, "the slow streams off the channel", func() bool { return waiters(t, "/"+ch) == 2 })
	// The server has closed their connections: its side is no longer
	// established (the kernel may still be sending it what it holds, at
	// the pace of a 4 KiB window; the client need not read it).
	for i, c := range slow {
		port := c.LocalAddr().(*net.TCPAddr).Port
		waitFor(t, fmt.Sprint("the server to close slow stream ", i), func() bool { return !serverSideOpen(t, 9080, port) })
	}
}

// TestStreamsLoseNothing: 10 EventSource, 10 WebSocket (ws+meta.nchan) and
// 10 long-poll subscribers on one channel while 4 publishers send 1000
// numbered messages: each gets all 1000, once, in the one order.
func TestStreamsLoseNothing(t *testing.T) { forEachStore(t, testStreamsLoseNothing) }

func testStreamsLoseNothing(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	const publishers, each = 4, 250
	total := publishers * each
	var wg sync.WaitGroup
	results := make([][]string, 30)
	ready := make(chan struct{}, 30)
	for i := range 10 {
		s := openSSE(t, h1Client, base+"/sub?id="+ch)
		wg.Go(func() {
			ready <- struct{}{}
			readSSE(t, i, s, total, &results[i])
		})
	}
	for i := 10; i < 20; i++ {
		c := openWS(t, base+"/sub?id="+ch, &websocket.DialOptions{Subprotocols: []string{"ws+meta.nchan"}})
		c.SetReadLimit(1 << 20)
		wg.Go(func() {
			ready <- struct{}{}
			readWS(t, i, c, true, total, &results[i])
		})
	}
	for i := 20; i < 30; i++ {
		wg.Go(func() {
			ready <- struct{}{}
			readLongPoll(t, i, base+"/sub?id="+ch, total, &results[i])
		})
	}
	for range 30 {
		<-ready
	}
	waitFor(t, "20 streams", func() bool { return waiters(t, "/"+ch) >= 20 })
	var pwg sync.WaitGroup
	for p := range publishers {
		pwg.Go(func() {
			for j := range each {
				if r := tryPost(t, base+"/pub/big?id="+ch, fmt.Sprintf("%d-%d", p, j)); r.status != 201 && r.status != 202 {
					t.Errorf("publish: %d", r.status)
				}
			}
		})
	}
	pwg.Wait()
	wg.Wait()
	storetest.OnceInOneOrder(t, results, total)
}

// TestReloadKeepsStreams: a config reload leaves open EventSource and
// WebSocket streams on the store; they get what is published through the
// new config.
func TestReloadKeepsStreams(t *testing.T) { forEachStore(t, testReloadKeepsStreams) }

func testReloadKeepsStreams(t *testing.T) {
	tester := startMain(t)
	ch := chanName(t, "a")
	s := openSSE(t, h1Client, base+"/sub?id="+ch)
	w := openWS(t, base+"/sub?id="+ch, nil)
	waitFor(t, "two streams", func() bool { return waiters(t, "/"+ch) == 2 })
	load(tester, strings.Replace(current.config, "max_reserved_memory 64M", "max_reserved_memory 63M", 1))
	defer load(tester, current.config)
	if r := publish(t, "/pub", ch, "after reload"); r.status != 201 || !strings.Contains(r.body, "active subscribers: 2") {
		t.Fatalf("publish after the reload: %d %q", r.status, r.body)
	}
	if ev := s.message(t); ev.data != "after reload" {
		t.Fatalf("EventSource after the reload: %+v", ev)
	}
	if _, got := wsRead(t, w); got != "after reload" {
		t.Fatalf("WebSocket after the reload: %q", got)
	}
}

// TestSubscribersByTransport: /push/stats and the metrics count open
// subscribers by transport, and channel info counts streams.
func TestSubscribersByTransport(t *testing.T) {
	startMain(t)
	// The streams of earlier tests end once their clients have gone; the
	// counts start from none.
	waitFor(t, "no stream open", func() bool {
		for _, n := range subscribersByTransport() {
			if n != 0 {
				return false
			}
		}
		return true
	})
	ch := chanName(t, "a")
	openSSE(t, h1Client, base+"/sub?id="+ch)
	openWS(t, base+"/sub?id="+ch, nil)
	waitFor(t, "two streams", func() bool { return waiters(t, "/"+ch) == 2 })
	if r := do(t, h1Client, "GET", base+"/pub?id="+ch, nil); !strings.Contains(r.body, "active subscribers: 2") {
		t.Fatalf("channel info: %q", r.body)
	}
	var st struct {
		By map[string]int64 `json:"subscribers_by_transport"`
	}
	r := adminJSON(t, "GET", "/push/stats", &st)
	if r.status != 200 || st.By["eventsource"] != 1 || st.By["websocket"] != 1 || st.By["long-poll"] != 0 {
		t.Fatalf("/push/stats: %d %s", r.status, r.body)
	}
	for tr, want := range map[string]float64{"websocket": 1, "eventsource": 1, "long-poll": 0} {
		if v := metricValue(t, `caddy_push_subscribers{transport="`+tr+`"}`); v != want {
			t.Fatalf("caddy_push_subscribers %s = %v, want %v", tr, v, want)
		}
	}
	_ = json.Valid
}
