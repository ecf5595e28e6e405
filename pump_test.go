package caddypush

import (
	"context"
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
func pumpGoroutines() int { return goroutinesIn(".(*pump).run(") }

// TestDetachedStreamsUnderLoad: thirty EventSource streams with a ping
// every 100 ms (their timer takes a detached stream over while publishers
// write to it or wake it), on four cores, and four publishers publishing
// forty messages each at once: every subscriber gets all 160, each
// publisher's in order, none twice.
func TestDetachedStreamsUnderLoad(t *testing.T) {
	startMain(t)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	ch := chanName(t, "load")
	const subs, pubs, each = 30, 4, 40
	conns := make([]*rawConn, subs)
	for i := range conns {
		conns[i] = rawStream(t, "GET /s/ping?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
		conns[i].head()
	}
	waitFor(t, "the subscribers", func() bool { return waiters(t, "/"+ch) == subs })
	attached := attachedStreams.Load()
	errs := make(chan error, subs+pubs)
	for p := range pubs {
		go func() {
			for i := range each {
				r, err := doCtx(context.Background(), h1Client, "POST", base+"/pub?id="+ch,
					strings.NewReader(fmt.Sprintf("p%d-%d", p, i)), "Content-Type", "text/plain")
				if err != nil || r.status >= 300 {
					errs <- fmt.Errorf("publish: %v %v", r.status, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for _, c := range conns {
		go func() {
			next := make([]int, pubs)
			got, buf, line := 0, make([]byte, 4096), ""
			for got < pubs*each {
				n, err := c.body.Read(buf)
				for _, b := range buf[:n] {
					if b != '\n' {
						line += string(b)
						continue
					}
					var p, i int
					if _, e := fmt.Sscanf(line, "data: p%d-%d", &p, &i); e == nil {
						if p < 0 || p >= pubs || i != next[p] {
							errs <- fmt.Errorf("got p%d-%d, want p%d-%d", p, i, p, next[min(max(p, 0), pubs-1)])
							return
						}
						next[p]++
						got++
					}
					line = ""
				}
				if err != nil {
					errs <- fmt.Errorf("after %d messages: %v", got, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range subs + pubs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each stream's ping timer takes it over within 100 ms; the messages may
	// all have come sooner (it failed at 29 of 30 when they did).
	waitFor(t, "every detached stream taken over", func() bool { return attachedStreams.Load()-attached >= subs })
}
