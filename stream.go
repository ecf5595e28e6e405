package caddypush

import (
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds what every streaming transport shares: the loop that
// sends a subscription's deliveries as they are queued, its keep-alives and
// timeout, and how a stream ends.

// streamWriter is one transport's framing of a stream.
type streamWriter interface {
	// message writes one message; ids is the subscriber's compound id
	// (already advanced to this message) when it follows several
	// channels, nil when it follows one.
	message(m *pushstore.Message, ids *runningID) error
	// ping writes a keep-alive, if the transport has one.
	ping() error
	// end writes the last bytes, naming why the stream ends, within
	// endWriteTimeout (see boundEnd).
	end(why streamEnd) error
	// flush sends what was written.
	flush() error
	// closeAfter has the connection closed (or the HTTP/2 stream reset)
	// when the handler returns: a stream that fell behind ends there.
	closeAfter()
}

// inlineWriter is a streamWriter that can also send a message without
// blocking, from the goroutine that publishes it, while its stream waits
// with nothing queued (see pump).
type inlineWriter interface {
	streamWriter
	// canInline reports whether it can (a direct stream on TCP, whose
	// message writes only add to the batch).
	canInline() bool
	// flushNow is flush without blocking: it reports whether all of the
	// batch went, and keeps the rest for the next flush.
	flushNow() bool
	// idle takes off the connection the write deadline that its blocking
	// writes, or the server before them, left on it: once passed, it
	// would fail the writes that must not block as well. The stream's
	// next blocking write sets one again. It is called by the stream's
	// goroutine when it leaves a parked stream.
	idle()
}

// frameSender is an inlineWriter that sends a message of one channel
// without blocking straight from the message's memoized frame, where
// message and flushNow would copy the frame into the batch first (for a
// 64 KiB message, an allocation and a copy per subscriber).
type frameSender interface {
	inlineWriter
	// sendNow is sendBatched's, without the copy.
	sendNow(m *pushstore.Message) bool
}

// sendBatched sends m to a parked stream through its batch: message, then
// flushNow.
func sendBatched(iw inlineWriter, m *pushstore.Message) bool {
	return iw.message(m, nil) == nil && iw.flushNow()
}

// streamEnd is why a stream ends, as an HTTP status and a reason.
type streamEnd struct {
	status int
	reason string
}

// The ways a stream ends.
var (
	endDeleted   = streamEnd{http.StatusGone, "Gone"}
	endTimeout   = streamEnd{http.StatusRequestTimeout, "Request Timeout"}
	endDisplaced = streamEnd{http.StatusConflict, "Conflict"}
	endShutdown  = streamEnd{http.StatusServiceUnavailable, "Service Unavailable"}
	endBehind    = streamEnd{http.StatusServiceUnavailable, "Service Unavailable: fell behind by more than stream_queue_size"}
)

// line is the end as nchan's status comment has it: "410 Gone".
func (e streamEnd) line() string { return itoa(e.status) + " " + e.reason }

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// endOf maps a subscription's end to the stream's.
func endOf(e pushstore.End) streamEnd {
	switch e {
	case pushstore.Deleted:
		return endDeleted
	case pushstore.Displaced:
		return endDisplaced
	case pushstore.Behind:
		return endBehind
	}
	return endShutdown // Shutdown, and Retry (a store that lost track)
}

// streams counts the open subscribers of each transport (the metrics and
// /push/stats show them).
var streams [numTransports]atomic.Int64

// A stream whose queue ends Behind normally sees it at its next Take and
// ends with its reason. One whose client takes no bytes at all is stuck in
// a write and would see it only when Caddy's write_idle_timeout (1 minute
// by default) fails that write. stall cuts such a stream: stallGrace after
// the queue ended, if the stream is still running, it makes the blocked
// write fail (again every stallRetry, at most stallTries times, since
// Caddy re-arms the write deadline before each write).
const (
	stallGrace = time.Second
	stallRetry = 100 * time.Millisecond
	stallTries = 20
)

type stall struct {
	mu   sync.Mutex
	cut  func() // makes the stream's write fail; set once the stream is open
	done chan struct{}
}

func newStall() *stall { return &stall{done: make(chan struct{})} }

// behind is the subscription's OnBehind.
func (st *stall) behind() {
	t := time.NewTimer(stallGrace)
	defer t.Stop()
	for range stallTries {
		select {
		case <-st.done:
			return
		case <-t.C:
		}
		st.mu.Lock()
		select {
		case <-st.done:
		default:
			if st.cut != nil {
				st.cut()
			}
		}
		st.mu.Unlock()
		t.Reset(stallRetry)
	}
}

// open names how to cut the stream.
func (st *stall) open(cut func()) {
	st.mu.Lock()
	st.cut = cut
	st.mu.Unlock()
}

// finish says the stream is over: it is not cut after this returns. It
// must be called before the handler returns.
func (st *stall) finish() {
	st.mu.Lock()
	close(st.done)
	st.mu.Unlock()
}

// endWriteTimeout bounds the writes that end a stream: its last bytes, and
// net/http's flush of the response's end after the handler returns.
const endWriteTimeout = time.Second

// httpStream is what the HTTP streams' writers (EventSource, multipart,
// chunked, raw) share: where their bytes go. That is the response, through
// Caddy's writers, or, on HTTP/1.1 when nothing between the handler and
// the connection changes the body, the connection itself (direct: see
// directstream.go).
type httpStream struct {
	w      io.Writer // the response, or direct
	rc     *http.ResponseController
	direct *directConn
	gone   <-chan struct{} // closed when the client leaves (not direct: direct.gone says it)
	cut    func()          // makes a blocked write fail, from any goroutine
	// h3 is an HTTP/3 response's own writer, and failed is set when a
	// write or flush of it failed: the stream is then reset when the
	// stream ends (resetIfFailed), as HTTP/2 resets a stream whose write
	// deadline passed. Without it, quic-go ends the response with a FIN,
	// and the client takes the bytes of a message cut short for a whole
	// one.
	h3     http3.HTTPStreamer
	failed *bool
}

// failWriter records that a write failed.
type failWriter struct {
	io.Writer
	failed *bool
}

func (fw failWriter) Write(p []byte) (int, error) {
	n, err := fw.Writer.Write(p)
	if err != nil {
		*fw.failed = true
	}
	return n, err
}

// resetIfFailed resets an HTTP/3 stream whose write failed. It runs in
// the handler's goroutine, once the stream is over.
func (hs httpStream) resetIfFailed() {
	if hs.h3 == nil || !*hs.failed {
		return
	}
	str := hs.h3.HTTPStream() // quic-go no longer ends the stream itself
	str.CancelWrite(quic.StreamErrorCode(http3.ErrCodeInternalError))
	str.CancelRead(quic.StreamErrorCode(http3.ErrCodeNoError))
}

// startHTTPStream sends the stream's head, written to w, and returns the
// stream the writer goes on with.
func startHTTPStream(w http.ResponseWriter, r *http.Request) httpStream {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if d := goDirect(w, r); d != nil {
		return httpStream{w: d, direct: d, cut: d.cut}
	}
	hs := httpStream{w: w, rc: rc, gone: leftOrGone(r), cut: deadlineCut(w)}
	if r.ProtoMajor == 3 {
		if h3, ok := innermost(w).(http3.HTTPStreamer); ok {
			hs.h3, hs.failed = h3, new(bool)
			hs.w = failWriter{w, hs.failed}
		}
	}
	return hs
}

func (hs httpStream) canInline() bool { return hs.direct != nil && hs.direct.raw != nil }

func (hs httpStream) flushNow() bool { return hs.direct.flushNow() }

func (hs httpStream) idle() { hs.direct.deadline.clear(hs.direct.conn) }

func (hs httpStream) flush() error {
	if hs.direct != nil {
		return hs.direct.flush()
	}
	err := hs.rc.Flush()
	if err != nil && hs.failed != nil {
		*hs.failed = true
	}
	return err
}

// boundEnd gives what is left to write endWriteTimeout, so a client that
// takes nothing does not keep its connection until Caddy's
// write_idle_timeout.
func (hs httpStream) boundEnd() {
	if hs.direct != nil {
		hs.direct.boundEnd()
		return
	}
	_ = hs.rc.SetWriteDeadline(time.Now().Add(endWriteTimeout))
}

// closeAfter makes the response's last write fail, once what was written
// is flushed, so the connection is closed rather than kept for another
// request (HTTP/1.1) and the stream is reset (HTTP/2).
func (hs httpStream) closeAfter() {
	if hs.direct != nil {
		hs.direct.abort = true
		return
	}
	_ = hs.rc.SetWriteDeadline(time.Now())
}

// pumpHTTP runs an HTTP stream: it names how to cut it (st), pumps sub
// into it until it ends, closes a direct connection and runs ended. A
// direct stream may go on after pumpHTTP returns (see pump).
func (s *Subscriber) pumpHTTP(sw streamWriter, hs httpStream, sub pushstore.Subscription, ids *runningID,
	ping time.Duration, st *stall, ended func()) {
	st.open(hs.cut)
	if hs.direct == nil {
		s.pump(sw, sub, ids, ping, hs.gone, nil, ended)
		hs.resetIfFailed()
		return
	}
	s.pump(sw, sub, ids, ping, nil, hs.direct.gone, func() {
		hs.direct.close()
		ended()
	})
}

// deadlineCut cuts an HTTP stream by a write deadline in the past on its
// connection (HTTP/1.1), or its stream (HTTP/2), set below Caddy's
// wrappers, which are not safe for use from another goroutine.
func deadlineCut(w http.ResponseWriter) func() {
	rc := http.NewResponseController(innermost(w))
	return func() { _ = rc.SetWriteDeadline(time.Now()) }
}
