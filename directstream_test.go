package caddypush

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestDirectStream: an EventSource stream on HTTP/1.1 goes direct (it
// takes its connection over after the head) and puts on the wire what it
// put through net/http: a chunk per batch, its end, the last chunk, then
// the connection closes. Behind encode, and over HTTP/2, it stays on the
// response.
func TestDirectStream(t *testing.T) {
	startMain(t)
	ch := chanName(t, "d")
	before := directStreams.Load()
	c := rawStreamUndecoded(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
	head := c.head()
	if !strings.HasPrefix(head, "HTTP/1.1 200") || headerOf(head, "Transfer-Encoding") != "chunked" {
		t.Fatalf("head: %q", head)
	}
	hi := ": hi\nretry: 3000\n\n"
	if got := c.until(t, hi+"\r\n"); got != fmt.Sprintf("%x\r\n%s\r\n", len(hi), hi) {
		t.Fatalf("the first chunk: %q", got)
	}
	// The head is flushed before the stream takes its connection over.
	waitFor(t, "the stream to go direct", func() bool { return directStreams.Load()-before == 1 })
	publish(t, "/pub", ch, "one\ntwo")
	got := c.until(t, "data: two\n\n\r\n")
	m := regexp.MustCompile(`^([0-9a-f]+)\r\n(id: [0-9]+:0\ndata: one\ndata: two\n\n)\r\n$`).FindStringSubmatch(got)
	if m == nil || m[1] != fmt.Sprintf("%x", len(m[2])) {
		t.Fatalf("a message's chunk: %q", got)
	}
	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
	end := ":410: 410 Gone\n\n"
	want := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(end), end)
	rest, err := io.ReadAll(c.body)
	if got := c.got.String() + string(rest); got != want || err != nil {
		t.Fatalf("the end: %q (%v), want %q and the connection closed", got, err, want)
	}

	// Behind encode, and over HTTP/2: on the response.
	before = directStreams.Load()
	gz := rawStreamUndecoded(t, "GET /gz/sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\nAccept-Encoding: gzip\r\n\r\n")
	if head := gz.head(); !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("through encode: %q", head)
	}
	s := openSSE(t, h2Client, base+"/sub?id="+ch)
	publish(t, "/pub", ch, "h2")
	if ev := s.message(t); ev.data != "h2" {
		t.Fatalf("over HTTP/2: %+v", ev)
	}
	if n := directStreams.Load() - before; n != 0 {
		t.Fatalf("%d streams went direct behind encode or over HTTP/2, want 0", n)
	}
}

// TestDirectStreamAccessLog: a direct stream's handler returns once the
// stream is open, so its access log line is written then (status 200, the
// head's bytes) while the stream goes on; the client leaving ends it.
func TestDirectStreamAccessLog(t *testing.T) {
	t.Parallel()
	logFile := t.TempDir() + "/access.log"
	p := runCaddy(t, pushSite+"\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}")
	conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.WriteString(conn, "GET /sub?id=log HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
	var entry struct {
		Status int `json:"status"`
		Size   int `json:"size"`
		Req    struct {
			URI string `json:"uri"`
		} `json:"request"`
	}
	waitFor(t, "the access log line of the open stream", func() bool {
		b, _ := os.ReadFile(logFile)
		for line := range strings.SplitSeq(string(b), "\n") {
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Req.URI == "/sub?id=log" {
				return true
			}
		}
		return false
	})
	if hi := ": hi\nretry: 3000\n\n"; entry.Status != 200 || entry.Size != len(hi) {
		t.Fatalf("access log: status %d size %d, want 200 and %d", entry.Status, entry.Size, len(hi))
	}
	do(t, h1Client, "POST", p.url+"/pub?id=log", strings.NewReader("after the log"))
	br := bufio.NewReader(conn)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("the stream ended before the message: %v", err)
		}
		if line == "data: after the log\n" {
			break
		}
	}
	conn.Close() // the client leaves: the stream ends
	waitFor(t, "the stream's end", func() bool { return p.subscribers(t, "log") == 0 })
}

// TestDirectChunks: batches of any size, written by a directConn, read back
// whole through Go's chunked reader, each as one chunk, and the end is the
// last chunk.
func TestDirectChunks(t *testing.T) {
	server, client := net.Pipe()
	d := &directConn{conn: server, gone: newLeaving()}
	sizes := []int{1, 15, 16, 255, 256, 4095, 4097, 70000}
	go func() {
		for i, n := range sizes {
			_, _ = d.Write(bytes.Repeat([]byte{byte('a' + i)}, n/2))
			_, _ = d.Write(bytes.Repeat([]byte{byte('a' + i)}, n-n/2))
			if err := d.flush(); err != nil {
				t.Errorf("flush: %v", err)
				return
			}
			_ = d.flush() // nothing to send: no empty chunk
		}
		d.close()
	}()
	br := bufio.NewReader(client)
	for i, n := range sizes {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("%x\r\n", n) {
			t.Fatalf("chunk %d: size line %q (%v)", i, line, err)
		}
		body := make([]byte, n+2)
		if _, err := io.ReadFull(br, body); err != nil || string(body) != strings.Repeat(string(rune('a'+i)), n)+"\r\n" {
			t.Fatalf("chunk %d of %d bytes: %v", i, n, err)
		}
	}
	if rest, _ := io.ReadAll(br); string(rest) != "0\r\n\r\n" {
		t.Fatalf("the end: %q", rest)
	}
}

// TestDirectStreamNotUnderABuffer: behind a handler that buffers the
// response (intercept, here replacing every 200), a stream does not go
// direct: the head is in that buffer, not on the wire. The stream ends at
// its timeout and the client gets what intercept makes of it. (intercept's
// own writer is not one of the pass-through writers; a recorder of Caddy's
// that buffers is refused too.)
func TestDirectStreamNotUnderABuffer(t *testing.T) {
	tester := startMain(t)
	load(tester, strings.Replace(mainConfig, ":9080 {", ":9080 {\n\troute /icpt/sub {\n\t\tintercept {\n\t\t\t@ok status 200\n\t\t\thandle_response @ok {\n\t\t\t\trespond \"intercepted\"\n\t\t\t}\n\t\t}\n\t\tpush_subscriber {\n\t\t\ttimeout 1s\n\t\t}\n\t}", 1))
	defer load(tester, mainConfig)
	before := directStreams.Load()
	r := do(t, h1Client, "GET", base+"/icpt/sub?id="+chanName(t, "i"), nil, "Accept", "text/event-stream")
	if r.status != 200 || r.body != "intercepted" {
		t.Fatalf("behind intercept: %d %q", r.status, r.body)
	}
	if n := directStreams.Load() - before; n != 0 {
		t.Fatalf("%d streams went direct under a buffering recorder", n)
	}
}

// TestParkedStream: a direct stream on TCP waiting with nothing queued is
// parked, and a publication writes its message straight to the connection
// from the publishing goroutine; the bytes are the stream's own (a chunk
// per message), and messages published back to back, parked or queued,
// arrive once each, in order. So on a server of HTTP/1.1 and h2c, and on
// one of HTTP/1.1 alone, whose connections Caddy wraps to refuse h2c.
func TestParkedStream(t *testing.T) {
	for _, protocols := range []string{"h1 h2c", "h1"} {
		t.Run(protocols, func(t *testing.T) {
			tester := startMain(t)
			load(tester, strings.Replace(mainConfig, "protocols h1 h2c", "protocols "+protocols, 1))
			defer load(tester, mainConfig)
			testParkedStream(t)
		})
	}
}

func testParkedStream(t *testing.T) {
	ch := chanName(t, "p")
	parked := parkedStreams.Load()
	c := rawStreamUndecoded(t, "GET /sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
	c.head()
	c.until(t, "retry: 3000\n\n\r\n")
	waitFor(t, "the stream to park", func() bool { return parkedStreams.Load() > parked })
	sends := parkedSends.Load()
	publish(t, "/pub", ch, "one")
	got := c.until(t, "data: one\n\n\r\n")
	if !regexp.MustCompile(`^[0-9a-f]+\r\nid: [0-9]+:0\ndata: one\n\n\r\n$`).MatchString(got) {
		t.Fatalf("the parked write's chunk: %q", got)
	}
	if n := parkedSends.Load() - sends; n != 1 {
		t.Fatalf("%d parked writes for a message to a parked stream, want 1", n)
	}
	const n = 50
	for i := range n {
		publish(t, "/pub", ch, fmt.Sprint("m", i))
	}
	got = c.until(t, fmt.Sprintf("data: m%d\n\n\r\n", n-1))
	data := regexp.MustCompile(`data: (m[0-9]+)\n`).FindAllStringSubmatch(got, -1)
	if len(data) != n {
		t.Fatalf("%d messages, want %d: %q", len(data), n, got)
	}
	for i, m := range data {
		if m[1] != fmt.Sprint("m", i) {
			t.Fatalf("message %d is %s: %q", i, m[1], got)
		}
	}
}

// TestDirectChunksWithoutBlocking: flushNow writes a batch without
// blocking, and when the socket is full keeps what did not go for the
// next flush: a client that stopped reading, then reads everything, gets
// every chunk whole and in order.
func TestDirectChunksWithoutBlocking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	d := &directConn{conn: server, gone: newLeaving()}
	d.raw, _ = server.(*net.TCPConn).SyscallConn()
	const size = 64 << 10
	chunk := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, size) }
	sent := 0
	for full := false; !full; sent++ {
		if sent == 2000 { // 128 MiB: far past any socket buffer
			t.Fatal("the socket never filled")
		}
		_, _ = d.Write(chunk(sent))
		full = !d.flushNow()
	}
	if len(d.pending) == 0 {
		t.Fatal("a write that did not all go kept nothing")
	}
	done := make(chan error, 1)
	go func() {
		_, _ = d.Write(chunk(sent))
		err := d.flush() // blocks until the client reads: what was left first
		d.close()
		done <- err
	}()
	_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(client)
	for i := 0; i <= sent; i++ {
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("%x\r\n", size) {
			t.Fatalf("chunk %d of %d: size line %q (%v)", i, sent+1, line, err)
		}
		body := make([]byte, size+2)
		if _, err := io.ReadFull(br, body); err != nil || !bytes.Equal(body[:size], chunk(i)) || string(body[size:]) != "\r\n" {
			t.Fatalf("chunk %d of %d: wrong bytes (%v)", i, sent+1, err)
		}
	}
	if rest, _ := io.ReadAll(br); string(rest) != "0\r\n\r\n" {
		t.Fatalf("the end: %q", rest)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestParkedSendWritesTheMemo: a parked EventSource stream and a parked
// WebSocket send a message's memoized frame as it is, so a publication of
// a 64 KiB message to N parked subscribers allocates nothing per
// subscriber (it copied the frame into a new batch buffer for each); the
// bytes on the wire are the frame's.
func TestParkedSendWritesTheMemo(t *testing.T) {
	const size, sends = 64 << 10, 100
	msg := &pushstore.Message{Body: bytes.Repeat([]byte("x"), size)}
	for _, tr := range []string{"eventsource", "websocket"} {
		server, client := tcpPair(t)
		raw, _ := server.(*net.TCPConn).SyscallConn()
		var fs frameSender
		var frame []byte
		switch tr {
		case "eventsource":
			d := &directConn{conn: server, leftover: leftover{raw: raw}, gone: newLeaving()}
			sw := &sseWriter{httpStream: httpStream{w: d, direct: d}}
			fs, frame = sw, framesOf(msg).chunk
		case "websocket":
			ww := &wsWriter{wc: &wsConn{Conn: server, leftover: leftover{raw: raw}}}
			fs, frame = ww, ww.rawFrame(msg)
		}
		wire := make([]byte, sends*len(frame)) // allocated before the count
		got := make(chan []byte, 1)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		go func() {
			n, _ := io.ReadFull(client, wire)
			got <- wire[:n]
		}()
		for range sends {
			if !fs.sendNow(msg) {
				if err := fs.flush(); err != nil { // the client reads: the rest goes
					t.Fatal(err)
				}
			}
		}
		runtime.ReadMemStats(&after)
		if b := <-got; !bytes.Equal(b, bytes.Repeat(frame, sends)) {
			t.Fatalf("%s: %d bytes on the wire, not %d frames of %d", tr, len(b), sends, len(frame))
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > sends*size/4 {
			t.Errorf("%s: %d sends of a %d-byte message allocated %d bytes", tr, sends, size, n)
		}
		small := &pushstore.Message{Body: []byte("hello")}
		fs.sendNow(small) // builds its frame
		if n := testing.AllocsPerRun(100, func() { fs.sendNow(small) }); n != 0 {
			t.Errorf("%s: a parked send of a memoized frame allocated %v times", tr, n)
		}
	}
}

// tcpPair returns the two ends of a TCP connection on the loopback.
func tcpPair(t *testing.T) (server, client net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if client, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

// TestNothingAfterAHalfWrite: once a stream's write fails (a client that
// took nothing for the write's timeout), the chunk or frame it began may
// be half on the wire, so nothing follows it: no chunked end marker on an
// EventSource, no close frame (nor pong) of gorilla's on a WebSocket. Such
// bytes would sit inside the broken chunk or frame (a client would read
// them as the message's), or, after a chunk that went whole, make a cut
// stream look as if it ended cleanly.
func TestNothingAfterAHalfWrite(t *testing.T) {
	batch := bytes.Repeat([]byte("x"), 64<<10)
	closeFrame := []byte{0x88, 0x02, 0x03, 0xe8} // what gorilla would write: close 1000
	for _, tr := range []string{"eventsource", "websocket"} {
		server, client := tcpPair(t)
		ld := lazyDeadline{timeout: 50 * time.Millisecond}
		var write func() error
		var end func()
		switch tr {
		case "eventsource":
			d := &directConn{conn: server, deadline: ld, gone: newLeaving()}
			write = func() error {
				_, _ = d.Write(batch)
				return d.flush()
			}
			end = d.close
		case "websocket":
			c := &wsConn{Conn: server}
			write = func() error { return c.writeOwn(batch, &ld) }
			end = func() {
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				_, _ = c.Write(closeFrame)
				_ = c.Close()
			}
		}
		var err error
		for i := 0; err == nil; i++ {
			if i == 2000 { // 128 MiB: far past any socket buffer
				t.Fatalf("%s: the writes never failed", tr)
			}
			err = write()
		}
		end()
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		wire, rerr := io.ReadAll(client)
		if rerr != nil {
			t.Fatalf("%s: reading what was sent: %v", tr, rerr)
		}
		if bytes.HasSuffix(wire, []byte("0\r\n\r\n")) || bytes.HasSuffix(wire, closeFrame) {
			t.Fatalf("%s: after a write failed (%v), more was sent: %q", tr, err, wire[max(len(wire)-16, 0):])
		}
	}
}
