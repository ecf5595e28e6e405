package caddypush

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestIdleStreamsDetach: an idle parked stream keeps no goroutine of its
// own. An EventSource stream and a WebSocket, once open and idle, are
// detached, with no more goroutines running a pump than before they
// opened; a message to them is written by the publisher and they stay
// detached; with four cores, the publisher wakes three of four
// subscribers of a message instead of writing to them (Inline), and their
// goroutines deliver every message, in order, and leave again; a client
// that leaves while its stream is detached ends it.
func TestIdleStreamsDetach(t *testing.T) {
	startMain(t)
	// On one core the publisher writes to every parked subscriber.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	ch := chanName(t, "detach")
	pumps := pumpGoroutines()
	detached := detachedStreams.Load()
	es := rawStream(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
	es.head()
	ws := openWS(t, base+"/sub?id="+ch, nil)
	waitFor(t, "two detached streams", func() bool { return detachedStreams.Load() >= detached+2 })
	if n := pumpGoroutines(); n > pumps {
		t.Fatalf("%d goroutines run a pump with two idle streams open, %d before", n, pumps)
	}
	publish(t, "/pub", ch, "to the detached")
	es.until(t, "data: to the detached\n\n")
	if _, m := wsRead(t, ws); m != "to the detached" {
		t.Fatalf("the WebSocket got %q", m)
	}
	if n := pumpGoroutines(); n > pumps {
		t.Fatalf("%d goroutines run a pump after a parked write, %d before", n, pumps)
	}

	// Four subscribers on four cores: the publisher writes to one and
	// wakes the others.
	ch4 := chanName(t, "detach4")
	subs := make([]*rawConn, 4)
	for i := range subs {
		subs[i] = rawStream(t, "GET /sub?id="+ch4+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
		subs[i].head()
	}
	waitFor(t, "six detached streams", func() bool { return detachedStreams.Load() >= detached+6 })
	runtime.GOMAXPROCS(4)
	attached := attachedStreams.Load()
	const n = 20
	var want strings.Builder
	for i := range n {
		publish(t, "/pub", ch4, fmt.Sprint("m", i))
		fmt.Fprintf(&want, "data: m%d\n\n", i)
	}
	for i, c := range subs {
		got := c.until(t, fmt.Sprintf("data: m%d\n\n", n-1))
		if data := strings.Join(dataLines(got), ""); data != want.String() {
			t.Fatalf("subscriber %d got %q", i, data)
		}
	}
	if a := attachedStreams.Load() - attached; a < 3 {
		t.Fatalf("%d detached streams were woken by %d messages to four on four cores, want at least 3", a, n)
	}
	waitFor(t, "the woken streams to detach again", func() bool { return detachedStreams.Load() >= detached+6 })

	es.conn.Close()
	_ = ws.CloseNow()
	waitFor(t, "the streams of the clients that left to end", func() bool { return waiters(t, "/"+ch) == 0 })
	if d := detachedStreams.Load(); d > detached+4 {
		t.Fatalf("%d detached streams after two of six ended, want %d", d, detached+4)
	}
}

// dataLines returns an EventSource body's data lines, each with the blank
// line that ends its event.
func dataLines(body string) []string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if strings.HasPrefix(line, "data: ") {
			out = append(out, line+"\n\n")
		}
	}
	return out
}

// pumpGoroutines counts the goroutines running a stream's pump.
func pumpGoroutines() int {
	buf := make([]byte, 8<<20)
	n := 0
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, ".(*pump).run(") {
			n++
		}
	}
	return n
}
