//go:build linux

package caddypush

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// This file holds tests of what a stream blocked by its client costs the
// server, and how long it lasts.

// dialSmallWindow connects to the test server with a small receive
// buffer, so a client that reads nothing fills it (and the server's send
// buffer) after little, and sends req.
func dialSmallWindow(t *testing.T, req string) *rawConn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	conn, err := d.Dial("tcp", "127.0.0.1:9080")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return &rawConn{conn: conn, br: bufio.NewReader(conn)}
}

func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // sync.Pool's victims too
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestBlockedDeflateWebSocketHoldsNoCompressor: a WebSocket subscriber of
// several channels with ws+meta.nchan and permessage-deflate gets each
// message compressed for it alone (its compound id differs). A client
// that reads nothing blocks the write of such a message; the stream may
// then hold what it was sent (its queue), but not more per client than a
// bounded amount: here messages of 16 KiB, and a client costs at most
// 256 KiB while blocked. gorilla compresses inside the write, and keeps its
// flate compressor (1.2 MB) while the write waits for the client, up to
// wsWriteTimeout (30 s).
func TestBlockedDeflateWebSocketHoldsNoCompressor(t *testing.T) {
	tester := startMain(t)
	load(tester, strings.Replace(mainConfig, "\tpush_subscriber /s/multi {",
		"\tpush_subscriber /s/mxq websocket {\n\t\tchannel_id {query.a} {query.b}\n\t\tstream_queue_size 64M\n\t}\n\tpush_subscriber /s/multi {", 1))
	defer load(tester, mainConfig)
	a, b := chanName(t, "a"), chanName(t, "b")
	const clients = 16
	base := heapAfterGC()
	for range clients {
		c := dialSmallWindow(t, "GET /s/mxq?a="+a+"&b="+b+" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ws+meta.nchan\r\n"+
			"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
		if head := c.head(); !strings.Contains(head, " 101 ") || !strings.Contains(head, "permessage-deflate") {
			t.Fatalf("handshake: %q", head)
		}
	}
	waitFor(t, "the WebSockets", func() bool { return waiters(t, "/"+a) == clients })
	opened := heapAfterGC()

	// The clients read nothing: publish incompressible messages (not
	// stored) until every stream is blocked writing one.
	body := make([]byte, 16<<10)
	blocked := func() int { return goroutinesIn("(*wsWriter).message", "net.(*conn).Write(") }
	for i := 0; blocked() < clients; i++ {
		if i == 200 { // 3.2 MB per client, far past a 4 KiB window
			t.Fatalf("after %d messages, %d of %d streams are blocked writing", i, blocked(), clients)
		}
		_, _ = rand.Read(body)
		publish(t, "/pub/off", a, string(body))
	}
	held := heapAfterGC()
	per := (int64(held) - int64(opened)) / clients
	t.Logf("heap: %d before, %d with %d WebSockets open, %d with each blocked writing: %d bytes per blocked client; %d writing through a flate compressor",
		base, opened, clients, held, per, goroutinesIn("(*wsWriter).message", "compress/flate.(*compressor)"))
	if per > 256<<10 {
		t.Errorf("each blocked deflate WebSocket costs %d bytes (messages of %d bytes)", per, len(body))
	}
}

// TestBehindStreamWithNoWindowIsCut: an HTTP/2 subscriber that grants no
// flow-control window blocks its stream's first flush (the head's first
// bytes). When its queue then falls behind (stream_queue_size), the stall
// must cut it within a few seconds, as it cuts a stream blocked in any
// later write: its subscription is gone, and the handler, its request and
// its HTTP/2 stream should go too, not stay for write_idle_timeout (a
// minute by default, or however long it is configured).
func TestBehindStreamWithNoWindowIsCut(t *testing.T) {
	startMain(t)
	conn, err := net.Dial("tcp", "127.0.0.1:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	_, _ = io.WriteString(conn, http2.ClientPreface)
	fr := http2.NewFramer(conn, conn)
	var writing sync.Mutex // the framer's writes, from here and the reader
	_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	go func() { // reads and acknowledges; never a WINDOW_UPDATE
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				writing.Lock()
				_ = fr.WriteSettingsAck()
				writing.Unlock()
			}
		}
	}()
	ch := chanName(t, "w0")
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "localhost"},
		{":path", "/s/small?id=" + ch}, {"accept", "text/event-stream"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	before := streams[tEventSource].Load()
	const n = 20
	writing.Lock()
	for i := range n {
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
	}
	writing.Unlock()
	waitFor(t, "the streams", func() bool { return waiters(t, "/"+ch) == n })
	for range 10 { // 80 KiB: past /s/small's 64 KiB queue
		publish(t, "/pub/off", ch, strings.Repeat("y", 8<<10))
	}
	waitFor(t, "the queues to fall behind", func() bool { return waiters(t, "/"+ch) == 0 })
	behind := time.Now()
	waitWithin(t, 8*time.Second, "the streams that fell behind to be cut", func() bool { return streams[tEventSource].Load() <= before })
	t.Logf("cut %v after they fell behind", time.Since(behind).Round(10*time.Millisecond))
}
