package caddypush

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// sseEvent is one event (or comment block) of a text/event-stream.
type sseEvent struct {
	event, id, data string
	comments        []string
	hasData         bool
}

// sseStream is an open EventSource response.
type sseStream struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

// openSSE opens an EventSource stream on url with extra headers, and
// checks its head.
func openSSE(t *testing.T, c *http.Client, url string, hdr ...string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Accept", "text/event-stream")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("EventSource %s: %d %v %q", url, resp.StatusCode, resp.Header, b)
	}
	s := &sseStream{resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next reads the next block up to its blank line (io.EOF at the end).
func (s *sseStream) next() (sseEvent, error) {
	var ev sseEvent
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			ev.data = strings.Join(data, "\n")
			return ev, nil
		case strings.HasPrefix(line, ":"):
			ev.comments = append(ev.comments, line)
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				ev.event = value
			case "id":
				ev.id = value
			case "data":
				data = append(data, value)
				ev.hasData = true
			}
		}
	}
}

// message reads blocks until one with data (an event a page would see),
// failing on the end of the stream.
func (s *sseStream) message(t *testing.T) sseEvent {
	t.Helper()
	for {
		ev, err := s.next()
		if err != nil {
			t.Fatalf("stream ended before a message: %v", err)
		}
		if ev.hasData {
			return ev
		}
	}
}

// ending reads the rest of the stream and returns its comments.
func (s *sseStream) ending(t *testing.T) []string {
	t.Helper()
	var comments []string
	for {
		ev, err := s.next()
		comments = append(comments, ev.comments...)
		if err != nil {
			return comments
		}
		if ev.hasData {
			t.Fatalf("a message %+v where the stream should end", ev)
		}
	}
}

// openWS opens a WebSocket on url (http:// is dialled as ws://).
func openWS(t *testing.T, url string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, strings.Replace(url, "http://", "ws://", 1), opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket %s: %v (%d)", url, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// wsRead reads one message within 10 s.
func wsRead(t *testing.T, c *websocket.Conn) (websocket.MessageType, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("reading a WebSocket message: %v", err)
	}
	return typ, string(data)
}

// wsClosed reads until the connection closes and returns the close.
func wsClosed(t *testing.T, c *websocket.Conn) (websocket.StatusCode, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := c.Read(ctx)
		if err == nil {
			t.Fatalf("a message %q where the connection should close", data)
		}
		var ce websocket.CloseError
		if ok := asCloseError(err, &ce); ok {
			return ce.Code, ce.Reason
		}
		t.Fatalf("the connection ended without a close frame: %v", err)
	}
}

func asCloseError(err error, ce *websocket.CloseError) bool {
	return errors.As(err, ce)
}

// rawConn is an HTTP/1.1 response read off the wire.
type rawConn struct {
	conn    net.Conn
	br      *bufio.Reader
	body    io.Reader
	decode  bool
	got     strings.Builder
	headStr string
}

// rawStream sends req on a new connection to the test server; its body is
// read with the chunked transfer coding removed.
func rawStream(t *testing.T, req string) *rawConn { return dialRaw(t, req, true) }

// rawStreamUndecoded is rawStream keeping the chunk framing in the body.
func rawStreamUndecoded(t *testing.T, req string) *rawConn { return dialRaw(t, req, false) }

func dialRaw(t *testing.T, req string, decode bool) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	return &rawConn{conn: conn, br: bufio.NewReader(conn), decode: decode}
}

// head reads the status line and headers.
func (c *rawConn) head() string {
	var b strings.Builder
	for {
		line, err := c.br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\r\n" {
			break
		}
	}
	c.headStr = b.String()
	c.body = c.br
	if c.decode && strings.Contains(strings.ToLower(c.headStr), "transfer-encoding: chunked") {
		c.body = httputil.NewChunkedReader(c.br)
	}
	return c.headStr
}

// until reads the body until what it has read contains want, and returns
// what it read.
func (c *rawConn) until(t *testing.T, want string) string {
	t.Helper()
	buf := make([]byte, 4096)
	for !strings.Contains(c.got.String(), want) {
		n, err := c.body.Read(buf)
		c.got.Write(buf[:n])
		if err != nil && !strings.Contains(c.got.String(), want) {
			t.Fatalf("read %q, never %q: %v", c.got.String(), want, err)
		}
	}
	s := c.got.String()
	i := strings.Index(s, want) + len(want)
	c.got.Reset()
	c.got.WriteString(s[i:])
	return s[:i]
}

// headerOf returns a header's value in a raw head.
func headerOf(head, name string) string {
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func newGzipReader(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }

// serverSideOpen reports whether the server's end of the TCP connection
// between its port and a client's port on this machine is established,
// from Linux's /proc/net/tcp and tcp6.
func serverSideOpen(t *testing.T, serverPort, clientPort int) bool {
	t.Helper()
	local, remote := fmt.Sprintf(":%04X", serverPort), fmt.Sprintf(":%04X", clientPort)
	read := 0
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		read++
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line) // sl, local address, rem address, st (01: established), ...
			if len(fs) > 3 && strings.HasSuffix(fs[1], local) && strings.HasSuffix(fs[2], remote) {
				return fs[3] == "01"
			}
		}
	}
	if read == 0 {
		t.Fatal("no /proc/net/tcp: this check needs Linux")
	}
	return false
}

// The readers of the lose-nothing tests: each appends the bodies it gets
// to *got until it has total, and reports an error with what it had.

// readSSE reads an EventSource stream's messages.
func readSSE(t *testing.T, i int, s *sseStream, total int, got *[]string) {
	for len(*got) < total {
		ev, err := s.next()
		if err != nil {
			t.Errorf("EventSource %d: %v after %d", i, err, len(*got))
			return
		}
		if ev.hasData {
			*got = append(*got, ev.data)
		}
	}
}

// readWS reads a WebSocket's messages; with meta, each frame's
// ws+meta.nchan header is cut off.
func readWS(t *testing.T, i int, c *websocket.Conn, meta bool, total int, got *[]string) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for len(*got) < total {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Errorf("WebSocket %d: %v after %d", i, err, len(*got))
			return
		}
		if meta {
			_, body, _ := strings.Cut(string(data), "\n\n")
			data = []byte(body)
		}
		*got = append(*got, string(data))
	}
}

// readLongPoll long-polls url with the cursor of each answer.
func readLongPoll(t *testing.T, i int, url string, total int, got *[]string) {
	var cur cursor
	for len(*got) < total {
		r, err := doCtx(context.Background(), h1Client, "GET", url, nil, cur.headers()...)
		if err != nil || r.status != 200 {
			t.Errorf("long-poll %d: %v %d after %d", i, err, r.status, len(*got))
			return
		}
		*got = append(*got, r.body)
		cur = r.cursor()
	}
}

// goroutinesIn counts the goroutines whose stacks hold every one of calls
// (runtime.Stack's "pkg.func(" forms).
func goroutinesIn(calls ...string) int {
	buf := make([]byte, 8<<20)
	n := 0
	for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		all := true
		for _, c := range calls {
			all = all && strings.Contains(g, c)
		}
		if all {
			n++
		}
	}
	return n
}
