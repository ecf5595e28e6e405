package caddypush

import (
	"net"
	"net/http"
	"reflect"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// This file holds the direct HTTP/1.1 stream: once an EventSource,
// multipart, chunked or raw stream has sent its head through Caddy, it
// takes the connection over (http.Hijacker) and writes each batch of
// messages as one HTTP/1.1 chunk, in one write, the chunk framing its own.
//
// Through net/http and Caddy's writers, a batch costs two write deadline
// updates (Caddy's write_idle_timeout re-arms one before each Write and
// each Flush), a response controller per flush, a formatted chunk header
// and two buffer copies; the direct stream sets a deadline at most every
// half write_idle_timeout and copies once. The bytes on the wire are the
// same. It is taken only where that holds: HTTP/1.1, a GET, and nothing
// between the handler and the connection but Caddy's own writers that
// pass bytes through unchanged (the access log's recorder, not
// buffering, and the idle timeout writers); behind encode, intercept, or
// any other handler that wraps the response, the stream stays on the
// response. HTTP/2 and HTTP/3 streams stay on the response too. The
// connection is taken from net/http's response itself, under every
// wrapper: the stream outlives the handler, so no wrapper sees its writes.

// passThroughWriters are the response writers, by type, that a direct
// stream may go under: Caddy's access log and metrics recorder (when it
// does not buffer), its idle timeout writers, its plain wrapper, and
// net/http's own response.
var passThroughWriters = map[string]bool{
	"*caddyhttp.responseRecorder":      true,
	"*caddyhttp.IdleTimeoutWriter":     true,
	"*caddyhttp.readDeadlineWriter":    true,
	"*caddyhttp.ResponseWriterWrapper": true,
	"*http.response":                   true,
}

// directStreams counts the streams that went direct (the tests read it).
var directStreams atomic.Int64

// What the tests read of parked streams (see pump): how many are parked
// now, their batches written by a publishing goroutine, and of those the
// ones that left bytes for the stream to send. They are counted only when
// countParked is set (by the tests, before any stream starts): on the
// delivery path, a counter every core adds to is a shared cache line.
var (
	parkedStreams, parkedSends, parkedShort atomic.Int64
	countParked                             bool
)

// chunkRoom is the room kept before a batch for its chunk size line: up
// to 16 hex digits (any int) and CRLF.
const chunkRoom = 18

// directConn is a hijacked HTTP/1.1 connection carrying a chunked stream.
// Only the stream's goroutine writes; cut may be called from any.
type directConn struct {
	conn net.Conn
	leftover
	out      []byte       // chunkRoom bytes, then the batch being built
	deadline lazyDeadline // write_idle_timeout; none without it
	abort    bool         // close without the last chunk (the stream fell behind, or a write failed)
	gone     *leaving     // the client closed, or sent an error
}

// goDirect takes over w's connection when the stream may go direct (see
// the top of this file), and returns nil when it may not.
func goDirect(w http.ResponseWriter, r *http.Request) *directConn {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 || r.Method != http.MethodGet {
		return nil
	}
	if !passesThrough(w) {
		return nil
	}
	conn, _, err := http.NewResponseController(innermost(w)).Hijack()
	if err != nil {
		return nil
	}
	d := &directConn{conn: conn, leftover: leftover{raw: rawOf(conn)}, gone: newLeaving()}
	if _, iw := caddyhttp.IdleTimeoutsFromContext(r.Context()); iw != nil {
		d.deadline.timeout = iw.Deadline.Timeout // write_min_rate is not applied
	}
	// The connection is no longer the HTTP server's: the exit waits for
	// the stream's end (the goroutine that runs it calls Done).
	hijacked.Add()
	directStreams.Add(1)
	go d.watch()
	return d
}

// rawOf returns the descriptor of the TCP connection that c's writes go
// to unchanged, for writes that must not block, or nil: not over TLS,
// whose bytes are not the stream's; under Caddy's h2c refusal (http2Conn,
// when a server speaks HTTP/1.1 alone), which reads the connection's
// first bytes and writes through.
func rawOf(c net.Conn) syscall.RawConn {
	if !rawIO {
		return nil
	}
	if reflect.TypeOf(c).String() == "*caddyhttp.http2Conn" {
		inner, ok := reflect.ValueOf(c).Elem().FieldByName("Conn").Interface().(net.Conn)
		if !ok {
			return nil
		}
		c = inner
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// leftover is a connection's writes that must not block (a parked
// stream's: see pump), and what the last of them left, which the next
// write sends first.
type leftover struct {
	raw     syscall.RawConn // nil: no writes that must not block
	pending []byte
	try     rawTry
}

// rawTry is a write that must not block: its bytes and its outcome, kept
// with the connection, so that the function raw is given (do, made once)
// allocates nothing per write. One write at a time uses it (the queue's
// or the connection's lock is held).
type rawTry struct {
	b   []byte
	n   int
	err error
	do  func(fd uintptr) bool
}

// writeNow writes b in one try that never waits for the socket and
// reports whether all of it went; what did not (a full socket buffer, a
// signal, a broken connection, whose next write then fails) is kept.
func (l *leftover) writeNow(b []byte) bool {
	t := &l.try
	if t.do == nil {
		t.do = func(fd uintptr) bool {
			t.n, t.err = writeRaw(fd, t.b)
			return true
		}
	}
	t.b, t.n, t.err = b, 0, nil
	err := l.raw.Write(t.do)
	n, werr := t.n, t.err
	t.b = nil
	if countParked {
		parkedSends.Add(1)
	}
	if err == nil && werr == nil && n == len(b) {
		return true
	}
	if countParked {
		parkedShort.Add(1)
	}
	l.pending = append([]byte(nil), b[max(n, 0):]...)
	return false
}

// waitReadable waits until the connection has bytes to read, or has
// ended, without reading any, in a shallow stack: most clients of a stream
// send nothing while it lasts, and a goroutine blocked in a deep read
// keeps a stack twice the size. It returns at once without raw (TLS).
func (l *leftover) waitReadable() {
	if l.raw == nil {
		return
	}
	_ = l.raw.Read(readable)
}

// writePending writes what a write that must not block left, to c.
func (l *leftover) writePending(c net.Conn) error {
	if len(l.pending) == 0 {
		return nil
	}
	_, err := c.Write(l.pending)
	l.pending = nil
	return err
}

// passesThrough reports whether every writer from w down to net/http's
// response passes the body through unchanged.
func passesThrough(w http.ResponseWriter) bool {
	for {
		if !passThroughWriters[reflect.TypeOf(w).String()] {
			return false
		}
		if rec, ok := w.(interface{ Buffered() bool }); ok && rec.Buffered() {
			return false // the head is in its buffer, not on the wire
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return true
		}
		w = u.Unwrap()
	}
}

// innermost returns the writer under every wrapper of w: net/http's
// response.
func innermost(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// watch reads the connection until it ends: a client sends nothing on a
// stream, so what it reads is dropped and its end is the client leaving.
func (d *directConn) watch() {
	defer d.gone.leave()
	var b [64]byte
	for {
		if _, err := d.conn.Read(b[:]); err != nil {
			return
		}
	}
}

// Write adds p to the batch.
func (d *directConn) Write(p []byte) (int, error) {
	if d.out == nil {
		d.out = make([]byte, chunkRoom, chunkRoom+len(p)+2)
	}
	d.out = append(d.out, p...)
	return len(p), nil
}

const hexDigits = "0123456789abcdef"

// chunk frames the batch as one chunk and returns it (nil when the batch
// is empty); the next batch starts after reuseBatch.
func (d *directConn) chunk() []byte {
	n := len(d.out) - chunkRoom
	if n <= 0 {
		return nil
	}
	i := chunkRoom - 2
	d.out[i], d.out[i+1] = '\r', '\n'
	for v := n; v > 0; v >>= 4 {
		i--
		d.out[i] = hexDigits[v&15]
	}
	d.out = append(d.out, '\r', '\n')
	return d.out[i:]
}

// flush writes what a write that must not block left, then the batch as
// one chunk.
func (d *directConn) flush() error {
	b := d.chunk()
	if b == nil && len(d.pending) == 0 {
		return nil
	}
	d.deadline.arm(d.conn)
	err := d.writePending(d.conn)
	if err == nil && b != nil {
		_, err = d.conn.Write(b)
		d.out = reuseBatch(d.out, chunkRoom)
	}
	if err != nil {
		d.abort = true // what went may end inside a chunk: no last chunk after it
	}
	return err
}

// flushNow writes the batch as one chunk without blocking, and reports
// whether all of it went; what did not is kept for flush. It needs raw.
func (d *directConn) flushNow() bool {
	b := d.chunk()
	if b == nil {
		return true
	}
	all := d.writeNow(b)
	d.out = reuseBatch(d.out, chunkRoom)
	return all
}

// boundEnd gives the stream's last writes endWriteTimeout.
func (d *directConn) boundEnd() {
	d.deadline.timeout = 0
	_ = d.conn.SetWriteDeadline(time.Now().Add(endWriteTimeout))
}

// cut makes a blocked write fail (the stall's cut).
func (d *directConn) cut() { _ = d.conn.SetWriteDeadline(time.Now()) }

// close ends the response with its last chunk, unless the stream fell
// behind or a chunk did not go whole (a failed write, or a write that must
// not block left some), and closes the connection: a hijacked connection
// does not go back to the HTTP server for another request.
func (d *directConn) close() {
	if !d.abort && len(d.pending) == 0 {
		_ = d.conn.SetWriteDeadline(time.Now().Add(endWriteTimeout))
		_, _ = d.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = d.conn.Close()
}

// lazyDeadline keeps a connection's write deadline between half and all
// of timeout ahead, moving it at most every half (moving a deadline is a
// runtime timer update, which Caddy's writers and gorilla do before every
// write): a write that blocks that long on a client that takes nothing
// fails. A zero timeout sets none.
type lazyDeadline struct {
	timeout time.Duration
	armed   time.Time // when the deadline was last moved
	// clean says the connection carries no write deadline: none was set
	// since clear took the last one off (a new connection may carry the
	// server's, from the writes before the stream took it over).
	clean bool
}

// arm moves c's write deadline if half the timeout has passed since it
// last did; it is called before each write.
func (ld *lazyDeadline) arm(c net.Conn) {
	if ld.timeout <= 0 {
		return
	}
	if now := time.Now(); now.Sub(ld.armed) >= ld.timeout/2 {
		ld.armed = now
		ld.clean = false
		_ = c.SetWriteDeadline(now.Add(ld.timeout))
	}
}

// clear takes c's write deadline off, unless it has none; the next arm
// sets one again.
func (ld *lazyDeadline) clear(c net.Conn) {
	if ld.clean {
		return
	}
	ld.clean = true
	ld.armed = time.Time{}
	_ = c.SetWriteDeadline(time.Time{})
}

// reuseBatch returns a written batch buffer emptied to its first keep
// bytes, or nil when it grew large: an idle stream keeps no large buffer.
func reuseBatch(b []byte, keep int) []byte {
	if cap(b) > 4096 {
		return nil
	}
	return b[:keep]
}
