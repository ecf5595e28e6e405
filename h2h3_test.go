package caddypush

// HTTP/2 and HTTP/3 specifics: a TLS site on 9443 served over h1, h2 and
// h3, with clients of each protocol.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const tlsBase = "https://localhost:9443"

// tlsSite is a TLS site on 9443 (h1, h2, h3) with the locations the
// tests use.
const tlsSite = `https://localhost:9443 {
	tls internal
	log {
		output file ACCESSLOG
		format json
	}
	push_publisher /tls/pub
	push_publisher /tls/pub/off {
		store_messages off
	}
	push_publisher /tls/pub/small {
		max_message_size 1k
	}
	push_subscriber /tls/sub
	push_subscriber /tls/first {
		concurrency first
	}
	push_subscriber /tls/small eventsource websocket multipart-mixed http-raw-stream {
		stream_queue_size 64k
	}
	push_subscriber /tls/raw http-raw-stream {
		http_raw_stream_separator --
	}
	push_subscriber /tls/ping {
		eventsource_ping_interval 100ms
	}
	push_subscriber /tls/timeout {
		timeout 1s
	}
	push_subscriber /tls/ws websocket
	push_pubsub /tls/ps
}
:9080 {`

type tlsClients struct {
	h1, h2, h3 *http.Client
	h3tr       *http3.Transport
	accessLog  string
}

// tlsLoad loads mainConfig with tlsSite and h1 h2 h2c h3, and returns
// clients of each protocol, once HTTP/3 answers with the internal
// certificate.
func tlsLoad(t *testing.T) (*caddytest.Tester, *tlsClients) {
	t.Helper()
	tester := startMain(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	site := strings.Replace(tlsSite, "ACCESSLOG", logFile, 1)
	cfg := strings.Replace(mainConfig, ":9080 {", site, 1)
	load(tester, strings.Replace(cfg, "protocols h1 h2c", "protocols h1 h2 h2c h3", 1))
	t.Cleanup(func() { load(tester, mainConfig) })
	tlsConf := &tls.Config{InsecureSkipVerify: true} // Caddy's internal CA
	c := &tlsClients{accessLog: logFile}
	c.h1 = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}, DisableCompression: true,
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	c.h2 = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, DisableCompression: true}}
	c.h3tr = &http3.Transport{TLSClientConfig: tlsConf}
	c.h3 = &http.Client{Transport: c.h3tr}
	t.Cleanup(func() {
		c.h1.CloseIdleConnections()
		c.h2.CloseIdleConnections()
		c.h3tr.Close()
	})
	waitFor(t, "HTTP/3 with the internal certificate", func() bool {
		r, err := doCtx(context.Background(), c.h3, "GET", tlsBase+"/tls/pub?id=x", nil)
		return err == nil && r.proto == 3
	})
	return tester, c
}

func (c *tlsClients) each() []struct {
	name   string
	client *http.Client
	proto  int
} {
	return []struct {
		name   string
		client *http.Client
		proto  int
	}{{"h2", c.h2, 2}, {"h3", c.h3, 3}}
}

// hopByHop are the connection-specific fields HTTP/2 (RFC 9113 8.2.2) and
// HTTP/3 (RFC 9114 4.2) forbid.
var hopByHop = []string{"Connection", "Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "Upgrade"}

func checkNoHopByHop(t *testing.T, what string, h http.Header) {
	t.Helper()
	for _, k := range hopByHop {
		if v, ok := h[k]; ok {
			t.Errorf("%s: connection-specific header %s: %q", what, k, v)
		}
	}
}

// TestH2H3LongPoll: long-polls over h2 and h3 take one message each, in
// order, resume from Last-Modified/Etag, and wait for the next; status,
// Content-Type and the cursor headers are those of HTTP/1.1.
func TestH2H3LongPoll(t *testing.T) {
	_, c := tlsLoad(t)
	for _, p := range c.each() {
		t.Run(p.name, func(t *testing.T) {
			ch := chanName(t, "lp")
			for i := range 3 {
				r := do(t, p.client, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader(fmt.Sprint("m", i)), "Content-Type", "text/x-rev")
				if r.status != 202 && r.status != 201 || r.proto != p.proto {
					t.Fatalf("publish: HTTP/%d %d %q", r.proto, r.status, r.body)
				}
				checkNoHopByHop(t, "publish", r.header)
			}
			var cur, cur1 cursor
			for i := range 3 {
				r := do(t, p.client, "GET", tlsBase+"/tls/sub?id="+ch, nil, cur.headers()...)
				r1 := do(t, c.h1, "GET", tlsBase+"/tls/sub?id="+ch, nil, cur1.headers()...)
				if r.status != 200 || r.body != fmt.Sprint("m", i) || r.proto != p.proto {
					t.Fatalf("poll %d: HTTP/%d %d %q", i, r.proto, r.status, r.body)
				}
				for _, k := range []string{"Content-Type", "Last-Modified", "Etag", "Cache-Control", "Vary", "Content-Length"} {
					if r.header.Get(k) != r1.header.Get(k) {
						t.Errorf("poll %d: %s %q over %s, %q over HTTP/1.1", i, k, r.header.Get(k), p.name, r1.header.Get(k))
					}
				}
				checkNoHopByHop(t, "poll", r.header)
				cur, cur1 = r.cursor(), r1.cursor()
			}
			out := make(chan resp, 1)
			getAsync(p.client, tlsBase+"/tls/sub?id="+ch, out, cur.headers()...)
			waitFor(t, "the waiter", func() bool { return waiters(t, "/"+ch) == 1 })
			do(t, p.client, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader("m3"))
			if r := <-out; r.status != 200 || r.body != "m3" || r.proto != p.proto {
				t.Fatalf("parked poll: HTTP/%d %d %q", r.proto, r.status, r.body)
			}
			// 304 on a poll with the current cursor that times out, 410 when deleted
			getAsync(p.client, tlsBase+"/tls/sub?id="+ch, out, do(t, p.client, "GET", tlsBase+"/tls/sub?id="+ch, nil, cur.headers()...).cursor().headers()...)
			waitFor(t, "the waiter", func() bool { return waiters(t, "/"+ch) == 1 })
			if r := do(t, p.client, "DELETE", tlsBase+"/tls/pub?id="+ch, nil); r.status != 200 {
				t.Fatalf("DELETE: %d %q", r.status, r.body)
			}
			if r := <-out; r.status != 410 {
				t.Fatalf("parked poll on DELETE: HTTP/%d %d %q", r.proto, r.status, r.body)
			} else {
				checkNoHopByHop(t, "410", r.header)
			}
		})
	}
}

// TestH2H3CancelledLongPollLeavesAtOnce: a parked long-poll whose
// client cancels it (h2 RST_STREAM; h3 STOP_SENDING and RESET_STREAM) is
// taken off its channel at once: the count drops, and concurrency first
// lets the next subscriber in.
func TestH2H3CancelledLongPollLeavesAtOnce(t *testing.T) {
	_, c := tlsLoad(t)
	for _, p := range c.each() {
		t.Run(p.name, func(t *testing.T) {
			ch := chanName(t, "first")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := doCtx(ctx, p.client, "GET", tlsBase+"/tls/first?id="+ch, nil)
				done <- err
			}()
			waitFor(t, "the waiter", func() bool { return waiters(t, "/"+ch) == 1 })
			lp := streams[tLongPoll].Load()
			cancel()
			<-done
			gone := time.Now()
			waitWithin(t, time.Second, "the cancelled waiter to leave", func() bool { return waiters(t, "/"+ch) == 0 })
			waitWithin(t, time.Second, "the long-poll count to drop", func() bool { return streams[tLongPoll].Load() < lp })
			t.Logf("left %v after the cancel", time.Since(gone).Round(time.Millisecond))
			out := make(chan resp, 1)
			getAsync(p.client, tlsBase+"/tls/first?id="+ch, out)
			waitFor(t, "the next waiter", func() bool { return waiters(t, "/"+ch) == 1 })
			do(t, p.client, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader("next"))
			if r := <-out; r.status != 200 || r.body != "next" {
				t.Fatalf("next subscriber: %d %q", r.status, r.body)
			}
		})
	}
}

// tlsStream opens a GET with hdr, checks 200, and returns the response.
func tlsStream(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, *bufio.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("GET %s: %d %q", url, res.StatusCode, b)
	}
	return res, bufio.NewReader(res.Body)
}

// readUntil reads r until it has read want, within d.
func readUntil(t *testing.T, r *bufio.Reader, want string, d time.Duration) string {
	t.Helper()
	var got strings.Builder
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1)
		for !strings.Contains(got.String(), want) {
			if _, err := r.Read(buf); err != nil {
				done <- err
				return
			}
			got.WriteByte(buf[0])
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading until %q: %v after %q", want, err, got.String())
		}
	case <-time.After(d):
		t.Fatalf("%q not read within %v", want, d)
	}
	return got.String()
}

// TestH2H3Streams: EventSource, multipart and the raw stream over h2
// and h3 get each message promptly (flushed), pings, and their end on
// DELETE; no connection-specific headers; heads as HTTP/1.1's.
func TestH2H3Streams(t *testing.T) {
	_, c := tlsLoad(t)
	for _, p := range c.each() {
		t.Run(p.name, func(t *testing.T) {
			ch := chanName(t, "s")
			es := openSSE(t, p.client, tlsBase+"/tls/sub?id="+ch)
			mp, mpr := tlsStream(t, p.client, tlsBase+"/tls/sub?id="+ch, "Accept", "multipart/mixed")
			raw, rawr := tlsStream(t, p.client, tlsBase+"/tls/raw?id="+ch)
			for _, res := range []*http.Response{es.resp, mp, raw} {
				if res.ProtoMajor != p.proto {
					t.Fatalf("proto %d", res.ProtoMajor)
				}
				checkNoHopByHop(t, "stream head", res.Header)
			}
			if ct := mp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/mixed; boundary=") {
				t.Fatalf("multipart Content-Type %q", ct)
			}
			if ct, ok := raw.Header["Content-Type"]; ok {
				t.Errorf("raw stream Content-Type %q (HTTP/1.1 has none)", ct)
			}
			waitFor(t, "3 subscribers", func() bool { return waiters(t, "/"+ch) == 3 })
			for i := range 3 {
				body := fmt.Sprint("msg-", i)
				start := time.Now()
				do(t, p.client, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader(body))
				if ev := es.message(t); ev.data != body {
					t.Fatalf("eventsource: %+v", ev)
				}
				readUntil(t, mpr, body, 2*time.Second)
				readUntil(t, rawr, body+"--", 2*time.Second)
				if d := time.Since(start); d > 500*time.Millisecond {
					t.Errorf("message %d took %v", i, d)
				}
			}
			do(t, p.client, "DELETE", tlsBase+"/tls/pub?id="+ch, nil)
			if got := es.ending(t); len(got) == 0 || got[len(got)-1] != ":410: 410 Gone" {
				t.Errorf("eventsource end: %q", got)
			}
			rest := readUntil(t, mpr, "--\r\n", 2*time.Second)
			if _, err := mpr.ReadByte(); err != io.EOF {
				t.Errorf("multipart after its closing boundary %q: %v", rest, err)
			}
			if _, err := io.ReadAll(rawr); err != nil {
				t.Errorf("raw stream end: %v", err)
			}
		})
	}
}

// TestH2H3PingAndTimeout: EventSource pings and the subscriber timeout
// over h2 and h3.
func TestH2H3PingAndTimeout(t *testing.T) {
	_, c := tlsLoad(t)
	for _, p := range c.each() {
		t.Run(p.name, func(t *testing.T) {
			ch := chanName(t, "p")
			s := openSSE(t, p.client, tlsBase+"/tls/ping?id="+ch)
			start := time.Now()
			for pings := 0; pings < 3; {
				ev, err := s.next()
				if err != nil || ev.hasData {
					t.Fatalf("ping: %+v %v", ev, err)
				}
				if ev.event == "ping" {
					pings++
				}
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("3 pings of 100 ms took %v", d)
			}
			start = time.Now()
			s2 := openSSE(t, p.client, tlsBase+"/tls/timeout?id="+ch)
			if got := s2.ending(t); len(got) == 0 || got[len(got)-1] != ":408: 408 Request Timeout" {
				t.Errorf("timeout end: %q", got)
			}
			if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
				t.Errorf("timeout 1s ended after %v", d)
			}
		})
	}
}

// TestH3StalledStreamIsCut: an HTTP/3 EventSource whose client stops
// reading (its QUIC stream window is small and never grows) is cut about
// a second after it falls behind stream_queue_size, as over HTTP/2.
func TestH3StalledStreamIsCut(t *testing.T) {
	_, c := tlsLoad(t)
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		QUICConfig: &quic.Config{InitialStreamReceiveWindow: 4096, MaxStreamReceiveWindow: 4096}}
	defer tr.Close()
	h3 := &http.Client{Transport: tr}
	_ = c
	for _, kind := range []struct{ name, accept string }{{"eventsource", "text/event-stream"}, {"multipart", "multipart/mixed"}} {
		t.Run(kind.name, func(t *testing.T) {
			ch := chanName(t, "stall")
			tt := tEventSource
			if kind.name == "multipart" {
				tt = tMultipart
			}
			before := streams[tt].Load()
			const n = 4
			for range n {
				res, _ := tlsStream(t, h3, tlsBase+"/tls/small?id="+ch, "Accept", kind.accept)
				if res.ProtoMajor != 3 {
					t.Fatalf("proto %d", res.ProtoMajor)
				}
			}
			waitFor(t, "the streams", func() bool { return waiters(t, "/"+ch) == n })
			for range 12 { // 96 KiB: past the 64 KiB queue
				do(t, c.h2, "POST", tlsBase+"/tls/pub/off?id="+ch, strings.NewReader(strings.Repeat("y", 8<<10)))
			}
			waitFor(t, "the queues to fall behind", func() bool { return waiters(t, "/"+ch) == 0 })
			behind := time.Now()
			waitWithin(t, 5*time.Second, "the streams that fell behind to be cut", func() bool { return streams[tt].Load() <= before })
			t.Logf("cut %v after they fell behind", time.Since(behind).Round(10*time.Millisecond))
		})
	}
}

// TestH2ManyStreamsOneConnection: 200 EventSource streams multiplexed
// on one HTTP/2 connection each get every message, and their end.
func TestH2ManyStreamsOneConnection(t *testing.T) {
	_, c := tlsLoad(t)
	ch := chanName(t, "many")
	const n, msgs = 300, 5
	ss := make([]*sseStream, n)
	for i := range ss {
		ss[i] = openSSE(t, c.h2, tlsBase+"/tls/sub?id="+ch)
	}
	waitFor(t, "the streams", func() bool { return waiters(t, "/"+ch) == n })
	for i := range msgs {
		do(t, c.h2, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader(fmt.Sprint("many-", i)))
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i, s := range ss {
		wg.Go(func() {
			for j := range msgs {
				ev, err := s.next()
				for err == nil && !ev.hasData {
					ev, err = s.next()
				}
				if err != nil || ev.data != fmt.Sprint("many-", j) {
					errs <- fmt.Sprintf("stream %d message %d: %+v %v", i, j, ev, err)
					return
				}
			}
		})
	}
	waitDone := make(chan struct{})
	go func() { wg.Wait(); close(waitDone) }()
	select {
	case <-waitDone:
	case <-time.After(20 * time.Second):
		t.Fatal("streams hung")
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	do(t, c.h2, "DELETE", tlsBase+"/tls/pub?id="+ch, nil)
	for i, s := range ss {
		if got := s.ending(t); len(got) == 0 || got[len(got)-1] != ":410: 410 Gone" {
			t.Fatalf("stream %d end: %q", i, got)
		}
	}
}

// hideLength is a body whose length net/http and quic-go cannot see.
type hideLength struct{ io.Reader }

// TestH2H3Publisher: POST with and without Content-Length, bodies past
// max_message_size (413, with and without a length), PUT, GET and DELETE
// over h2 and h3, answered as over HTTP/1.1.
func TestH2H3Publisher(t *testing.T) {
	_, c := tlsLoad(t)
	type answer struct {
		status int
		ct     string
	}
	run := func(cl *http.Client, ch string) []answer {
		var out []answer
		add := func(r resp) {
			checkNoHopByHop(t, "publisher", r.header)
			out = append(out, answer{r.status, r.header.Get("Content-Type")})
		}
		add(do(t, cl, "PUT", tlsBase+"/tls/pub?id="+ch, nil))
		add(do(t, cl, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader("with length")))
		add(do(t, cl, "POST", tlsBase+"/tls/pub?id="+ch, hideLength{strings.NewReader("without length")}))
		add(do(t, cl, "GET", tlsBase+"/tls/pub?id="+ch, nil, "Accept", "application/json"))
		add(do(t, cl, "POST", tlsBase+"/tls/pub/small?id="+ch, strings.NewReader(strings.Repeat("x", 2000))))
		add(do(t, cl, "POST", tlsBase+"/tls/pub/small?id="+ch, hideLength{strings.NewReader(strings.Repeat("x", 2000))}))
		add(do(t, cl, "DELETE", tlsBase+"/tls/pub?id="+ch, nil))
		add(do(t, cl, "GET", tlsBase+"/tls/pub?id="+ch, nil))
		return out
	}
	want := run(c.h1, chanName(t, "h1"))
	if want[4].status != 413 || want[5].status != 413 {
		t.Fatalf("HTTP/1.1: %v", want)
	}
	for _, p := range c.each() {
		got := run(p.client, chanName(t, p.name))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: %v, HTTP/1.1: %v", p.name, got, want)
		}
	}
	// a message received without a length is stored whole
	ch := chanName(t, "nolen")
	do(t, c.h3, "POST", tlsBase+"/tls/pub?id="+ch, hideLength{strings.NewReader(strings.Repeat("z", 100000))})
	if r := do(t, c.h3, "GET", tlsBase+"/tls/sub?id="+ch, nil); r.status != 200 || len(r.body) != 100000 {
		t.Fatalf("h3 body without length: %d %d bytes", r.status, len(r.body))
	}
}

// TestH3ExtendedConnectWebSocket: HTTP/3 servers (quic-go) advertise
// SETTINGS_ENABLE_CONNECT_PROTOCOL, so an RFC 9220 client may open a
// WebSocket with an extended CONNECT: a location that serves WebSockets
// answers 501 naming HTTP/1.1, the others 405.
func TestH3ExtendedConnectWebSocket(t *testing.T) {
	_, c := tlsLoad(t)
	ch := chanName(t, "xc")
	for path, want := range map[string]int{"/tls/ws": 501, "/tls/sub": 501, "/tls/ps": 501, "/tls/raw": 405} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodConnect, tlsBase+path+"?id="+ch, nil)
		req.Proto = "websocket"
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Origin", "https://localhost:9443")
		res, err := c.h3tr.RoundTrip(req)
		if err != nil {
			cancel()
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		res.Body.Close()
		cancel()
		t.Logf("%s: extended CONNECT over h3: %d %v %q", path, res.StatusCode, res.Header, b)
		if res.StatusCode != want || (want == 501 && !strings.Contains(string(b), "HTTP/1.1")) {
			t.Errorf("%s: extended CONNECT answered %d %q, want %d naming HTTP/1.1", path, res.StatusCode, b, want)
		}
	}
}

// TestH3AccessLog: h3 and h2 deliveries are logged with their protocol
// and push_transport.
func TestH3AccessLog(t *testing.T) {
	_, c := tlsLoad(t)
	ch := chanName(t, "log")
	for _, p := range c.each() {
		s := openSSE(t, p.client, tlsBase+"/tls/sub?id="+ch+"&"+p.name)
		do(t, p.client, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader("x"))
		s.message(t)
		s.close()
		do(t, p.client, "GET", tlsBase+"/tls/sub?id="+ch+"&lp"+p.name, nil)
	}
	want := []string{`"proto":"HTTP/2.0"`, `"proto":"HTTP/3.0"`}
	waitFor(t, "the access log", func() bool {
		b, _ := os.ReadFile(c.accessLog)
		n := 0
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "/tls/sub?id="+ch) && strings.Contains(line, `"push_transport"`) {
				n++
			}
		}
		return n >= 4
	})
	b, _ := os.ReadFile(c.accessLog)
	for _, w := range want {
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, w) && strings.Contains(line, `"push_transport":"eventsource"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no eventsource line with %s:\n%s", w, b)
		}
	}
}

// TestH2H3CutStreamEndsWithError: a raw stream whose client stops
// reading in the middle of a message falls behind and is cut a second
// later. Over HTTP/1.1 the connection is closed inside the chunk, and over
// HTTP/2 the stream is reset: the client sees an error, not the end of the
// stream. Over HTTP/3 it must see one too, not a clean end of the body
// after a truncated message (which a raw stream client cannot tell from a
// whole one).
func TestH2H3CutStreamEndsWithError(t *testing.T) {
	_, c := tlsLoad(t)
	tlsConf := &tls.Config{InsecureSkipVerify: true}
	h3tr := &http3.Transport{TLSClientConfig: tlsConf,
		QUICConfig: &quic.Config{InitialStreamReceiveWindow: 4096, MaxStreamReceiveWindow: 4096}}
	defer h3tr.Close()
	h2tr := &http.Transport{TLSClientConfig: tlsConf, ForceAttemptHTTP2: true, DisableCompression: true,
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 1 << 20}}
	defer h2tr.CloseIdleConnections()
	for _, p := range []struct {
		name  string
		c     *http.Client
		proto int
	}{{"h2", &http.Client{Transport: h2tr}, 2}, {"h3", &http.Client{Transport: h3tr}, 3}} {
		t.Run(p.name, func(t *testing.T) {
			ch := chanName(t, "cut")
			before := streams[tRawStream].Load()
			res, br := tlsStream(t, p.c, tlsBase+"/tls/small?id="+ch)
			if res.ProtoMajor != p.proto {
				t.Fatalf("proto %d", res.ProtoMajor)
			}
			waitFor(t, "the stream", func() bool { return waiters(t, "/"+ch) == 1 })
			msg := strings.Repeat("0123456789abcdef", 10<<10) // 160 KiB: past the client's window
			do(t, c.h2, "POST", tlsBase+"/tls/pub/off?id="+ch, strings.NewReader(msg))
			for range 2 { // past the 64 KiB queue
				do(t, c.h2, "POST", tlsBase+"/tls/pub/off?id="+ch, strings.NewReader(msg))
			}
			waitFor(t, "the queue to fall behind", func() bool { return waiters(t, "/"+ch) == 0 })
			waitWithin(t, 5*time.Second, "the stream to be cut", func() bool { return streams[tRawStream].Load() <= before })
			got, err := io.ReadAll(br)
			t.Logf("read %d bytes after the cut, then %v", len(got), err)
			if err == nil {
				t.Errorf("the cut stream ended cleanly after %d bytes of a %d-byte message: the client takes a truncated message for a whole one",
					len(got), len(msg))
			}
		})
	}
}

// TestH2H3BigBodyRefused: 8 MiB bodies on a 1k location over h2 and h3,
// with and without Content-Length, are answered 413 promptly (the client
// still sending), and the bodies being received hold little.
func TestH2H3BigBodyRefused(t *testing.T) {
	_, c := tlsLoad(t)
	for _, p := range c.each() {
		for _, hide := range []bool{false, true} {
			var body io.Reader = strings.NewReader(strings.Repeat("b", 8<<20))
			if hide {
				body = hideLength{body}
			}
			start := time.Now()
			r, err := doCtx(context.Background(), p.client, "POST", tlsBase+"/tls/pub/small?id="+chanName(t, "big"), body)
			t.Logf("%s, hidden length %v: %d %q %v in %v", p.name, hide, r.status, r.body, err, time.Since(start).Round(time.Millisecond))
			if err != nil || r.status != 413 {
				t.Errorf("%s, hidden length %v: %d %v", p.name, hide, r.status, err)
			}
		}
	}
}

// TestH2H3CancelledStreamLeavesAtOnce: an EventSource, multipart or raw
// stream whose client cancels it over h2 or h3 is taken off its channel at
// once.
func TestH2H3CancelledStreamLeavesAtOnce(t *testing.T) {
	_, c := tlsLoad(t)
	for _, p := range c.each() {
		for _, accept := range []string{"text/event-stream", "multipart/mixed", ""} {
			ch := chanName(t, p.name+"-"+strings.ReplaceAll(accept, "/", "_"))
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", tlsBase+"/tls/small?id="+ch, nil)
			if accept != "" {
				req.Header.Set("Accept", accept)
			}
			res, err := p.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the stream", func() bool { return waiters(t, "/"+ch) == 1 })
			cancel()
			res.Body.Close()
			start := time.Now()
			waitWithin(t, time.Second, p.name+" "+accept+" to leave", func() bool { return waiters(t, "/"+ch) == 0 })
			t.Logf("%s %q left in %v", p.name, accept, time.Since(start).Round(time.Millisecond))
		}
	}
}

// TestH2ExtendedConnectNotOffered: Caddy's HTTP/2 (Go 1.26's net/http)
// does not offer RFC 8441 (SETTINGS_ENABLE_CONNECT_PROTOCOL), so browsers
// open WebSockets with HTTP/1.1; a client that sends an extended CONNECT
// anyway gets its stream reset, and the module never sees it.
func TestH2ExtendedConnectNotOffered(t *testing.T) {
	tlsLoad(t)
	conn, err := tls.Dial("tcp", "localhost:9443", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "CONNECT"}, {":protocol", "websocket"}, {":scheme", "https"},
		{":authority", "localhost:9443"}, {":path", "/tls/ws?id=x"}, {"sec-websocket-version", "13"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	sent := false
	for range 20 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			v, ok := f.Value(http2.SettingEnableConnectProtocol)
			t.Logf("server SETTINGS: ENABLE_CONNECT_PROTOCOL %v %v", v, ok)
			if ok && v == 1 {
				t.Errorf("the server offers extended CONNECT: the module must serve RFC 8441 WebSockets")
			}
			_ = fr.WriteSettingsAck()
			if !sent {
				_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
				sent = true
			}
		case *http2.RSTStreamFrame:
			t.Logf("extended CONNECT: RST_STREAM %v", f.ErrCode)
			return
		case *http2.HeadersFrame:
			t.Logf("extended CONNECT answered: %x", f.HeaderBlockFragment())
			return
		case *http2.GoAwayFrame:
			t.Logf("extended CONNECT: GOAWAY %v", f.ErrCode)
			return
		}
	}
	t.Fatal("no answer to the extended CONNECT")
}
