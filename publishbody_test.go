package caddypush

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// bodyStats reads the body figures of /push/stats from an admin address.
func bodyStats(t *testing.T, admin string) (receiving, bytes int64) {
	t.Helper()
	r := do(t, h1Client, "GET", "http://"+admin+"/push/stats", nil)
	var st struct {
		Receiving int64 `json:"receiving_bodies"`
		Bytes     int64 `json:"body_bytes"`
	}
	if err := json.Unmarshal([]byte(r.body), &st); err != nil {
		t.Fatalf("/push/stats: %v %q", err, r.body)
	}
	return st.Receiving, st.Bytes
}

// announce opens a connection to addr and sends a POST's headers that
// announce size body bytes, and the first `send` of them.
func announce(t *testing.T, addr, path string, size, send int) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n%s",
		path, addr, size, strings.Repeat("x", send))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return conn
}

// stalledFrame opens a WebSocket to path on addr, sends the header of a
// 100-byte text frame and 10 of its bytes, then nothing, and returns the
// code and reason of the close frame the server sends.
func stalledFrame(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", res, err)
	}
	frame := append([]byte{0x81, 0x80 | 100, 0, 0, 0, 0}, strings.Repeat("x", 10)...) // masked with zeros
	if _, err := conn.Write(frame); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		var head [2]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		payload := make([]byte, head[1]&0x7f) // a server's control frames are short and unmasked
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		if head[0]&0x0f == 8 && len(payload) >= 2 {
			return int(payload[0])<<8 | int(payload[1]), string(payload[2:])
		}
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// TestAnnouncedBodiesCostNothing opens 300 publisher connections and 50 to
// the admin API's publish, each announcing a 1 MiB body and sending
// nothing: the heap must grow by what the connections cost, not by the
// 350 MiB announced. (The publisher allocated the announced size before
// reading a byte.)
func TestAnnouncedBodiesCostNothing(t *testing.T) {
	startMain(t)
	before := heapInUse()
	const pubs, admins = 300, 50
	for i := range pubs {
		announce(t, "localhost:9080", fmt.Sprintf("/pub?id=announce%d", i), 1<<20, 0)
	}
	for i := range admins {
		announce(t, "localhost:2999", fmt.Sprintf("/push/channels/announce%d", i), 1<<20, 0)
	}
	waitFor(t, "every body to be waited for", func() bool {
		n, _ := bodyStats(t, "localhost:2999")
		return n == pubs+admins
	})
	grown := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %.1f MiB for %d announced 1 MiB bodies", float64(grown)/(1<<20), pubs+admins)
	if grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB for bodies that never came", grown>>20)
	}
	if _, held := bodyStats(t, "localhost:2999"); held > (pubs+admins)*firstBodyBuffer {
		t.Fatalf("body buffers hold %d bytes, more than %d small first buffers", held, pubs+admins)
	}
}

// TestBodyLimitsOnAFreshServer runs a Caddy binary with default server
// timeouts (no read timeout of Caddy's own bounds a whole body):
//   - a body that trickles a byte every 200 ms past body_timeout is cut
//     with 408 and the connection closed;
//   - while one body being received holds max_body_memory, other
//     publications get 503 with Retry-After and a reason, and publish
//     again once it is gone.
func TestBodyLimitsOnAFreshServer(t *testing.T) {
	t.Parallel()
	p := runCaddyGlobal(t, "\tpush {\n\t\tmax_body_memory 64k\n\t}",
		"\troute /pub {\n\t\tpush_publisher {\n\t\t\tbody_timeout 1s\n\t\t}\n\t}\n"+
			"\troute /ps {\n\t\tpush_pubsub {\n\t\t\tbody_timeout 1s\n\t\t}\n\t}")
	addr := strings.TrimPrefix(p.url, "http://")

	conn := announce(t, addr, "/pub?id=trickle", 100, 1)
	start := time.Now()
	done := make(chan struct{})
	go func() { // a byte every 200 ms, for at most 10 s
		defer close(done)
		for range 50 {
			time.Sleep(200 * time.Millisecond)
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 408 ") {
		t.Fatalf("trickling body: %q %v, want 408", status, err)
	}
	rest, _ := io.ReadAll(br) // until the server closes the connection
	if !strings.Contains(string(rest), "body_timeout") {
		t.Fatalf("408 without a reason: %q", rest)
	}
	t.Logf("a body trickling a byte every 200 ms cut after %v", time.Since(start).Round(time.Millisecond))
	<-done
	if code, reason := stalledFrame(t, addr, "/ps?id=trickle"); code != 1011 || reason != "408 Request Timeout" {
		t.Fatalf("a WebSocket frame that stalls: close %d %q, want 1011 \"408 Request Timeout\"", code, reason)
	}

	big := announce(t, addr, "/pub?id=big", 100<<10, 40<<10)
	waitFor(t, "the big body's first 40 KiB received", func() bool {
		_, held := bodyStats(t, p.admin)
		return held >= 40<<10
	})
	r := post(t, p.url+"/pub?id=small", "hello")
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "max_body_memory") {
		t.Fatalf("publish while max_body_memory is held: %d %v %q, want 503 with Retry-After", r.status, r.header, r.body)
	}
	ws := openWS(t, "ws://"+addr+"/ps?id=small", nil)
	if err := ws.Write(context.Background(), websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if code, reason := wsClosed(t, ws); code != websocket.StatusInternalError || reason != "503 Service Unavailable" {
		t.Fatalf("a WebSocket frame while max_body_memory is held: close %d %q, want 1011 \"503 Service Unavailable\"", code, reason)
	}
	big.Close()
	waitFor(t, "the big body's memory released", func() bool {
		n, held := bodyStats(t, p.admin)
		return n == 0 && held == 0
	})
	if r := post(t, p.url+"/pub?id=small", "hello"); r.status != 202 {
		t.Fatalf("publish after the big body went: %d %q", r.status, r.body)
	}
}

// TestReadBodyCutGoesThroughHandleErrors: a body cut by the server's
// read_body (2 s here, before body_timeout's 30 s) is Caddy's 408, through
// handle_errors, as a short body's 400 is; before, the handler answered it
// itself, blaming body_timeout (30s).
func TestReadBodyCutGoesThroughHandleErrors(t *testing.T) {
	tester := startMain(t)
	load(tester, strings.Replace(mainConfig, ":9080 {\n", ":9080 {\n\thandle_errors {\n\t\trespond \"handled {err.status_code}\"\n\t}\n", 1))
	defer load(tester, mainConfig)
	ch := chanName(t, "a")
	for _, tc := range []struct {
		req        string
		closeWrite bool
		want       string
	}{
		{"POST /pub?id=" + ch + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nshort", true, "handled 400"},
		{"POST /pub?id=" + ch + " HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789", false, "handled 408"},
	} {
		refusals := `caddy_push_refusals_total{code="` + tc.want[len(tc.want)-3:] + `"}`
		before := max(metricValue(t, refusals), 0)
		conn, err := net.Dial("tcp", "localhost:9080")
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(conn, tc.req); err != nil {
			t.Fatal(err)
		}
		if tc.closeWrite {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		conn.Close()
		if string(body) != tc.want {
			t.Fatalf("%q: %s %q, want %q", tc.req[:30], res.Status, body, tc.want)
		}
		// The answer went through handle_errors, and is counted as a
		// refusal all the same.
		if after := metricValue(t, refusals); after != before+1 {
			t.Errorf("%s went from %v to %v", refusals, before, after)
		}
	}
}

// TestUnknownLengthBodyKeepsNoSlack: a body without Content-Length is read
// into a buffer that doubles; what is kept (and stored) is the body's own
// size, which is what max_reserved_memory is charged, not the last
// doubling (a 600 KiB message kept a 1 MiB array).
func TestUnknownLengthBodyKeepsNoSlack(t *testing.T) {
	for _, size := range []int{100, 600 << 10} {
		bd, err := readInto(struct{ io.Reader }{strings.NewReader(strings.Repeat("x", size))}, -1, DefaultMaxMessageSize)
		if err != nil {
			t.Fatal(err)
		}
		if len(bd.data) != size || cap(bd.data) > size+size/8 {
			t.Errorf("a %d-byte body kept %d bytes in a %d-byte array", size, len(bd.data), cap(bd.data))
		}
		bd.release()
	}
}
