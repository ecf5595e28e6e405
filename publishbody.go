package caddypush

import (
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// This file holds how a publication's body is read: into memory that grows
// with the bytes that actually arrive (never with the Content-Length a
// client announces), within a deadline on the whole body, and within a
// process-wide cap on the bytes of all bodies being received at once.

// Defaults of the body limits.
const (
	DefaultBodyTimeout   = 30 * time.Second
	DefaultMaxBodyMemory = 32 << 20
)

// firstBodyBuffer is the buffer a body is first read into; it doubles as
// bytes arrive.
const firstBodyBuffer = 512

// errBodyMemory refuses a body when the bodies being received already hold
// max_body_memory (503).
var errBodyMemory = errors.New("message bodies being received fill max_body_memory")

// errBodyTimeout ends a body not received within body_timeout (408).
var errBodyTimeout = errors.New("message body not received within body_timeout")

// bodyBudget counts the buffer bytes of every body being received in the
// process, against a cap the running push app sets (max_body_memory).
type bodyBudget struct {
	max       atomic.Int64
	used      atomic.Int64
	receiving atomic.Int64 // bodies being read
}

// bodies is the process's body budget: in-flight publications of every
// config, across reloads, share it.
var bodies = func() *bodyBudget {
	b := new(bodyBudget)
	b.max.Store(DefaultMaxBodyMemory)
	return b
}()

// reserve charges n more bytes to a body that holds `held` already. It
// refuses when the total would pass the cap, unless this body is the only
// one holding anything: a single publication may always grow to its
// location's max_message_size.
func (b *bodyBudget) reserve(held, n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.max.Load() && used != held {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *bodyBudget) release(n int64) { b.used.Add(-n) }

// body is a publication body read into memory; release must be called once
// its bytes are no longer needed apart from the store's copy or reference.
type body struct {
	data []byte
	held int64 // bytes charged to the budget
}

func (bd *body) release() {
	bodies.release(bd.held)
	bd.held = 0
}

// readBody reads the whole message body. It refuses more than limit bytes
// with an *http.MaxBytesError, a body that does not arrive within timeout
// with errBodyTimeout, and a body that would take the bodies being
// received past max_body_memory with errBodyMemory. The buffer starts
// small and doubles as bytes arrive, up to the Content-Length when one is
// given, so a client that announces a large body and sends nothing costs
// almost nothing.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, timeout time.Duration) (*body, error) {
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	if r.ContentLength == 0 {
		return &body{}, nil
	}
	var src io.Reader = r.Body
	if expectsContinue(r) {
		src = &continueReader{Reader: r.Body, h: w.Header()}
	}
	if timeout > 0 {
		deadline := time.Now().Add(timeout)
		lift := bodyDeadline(w, r, deadline)
		bd, err := readInto(src, r.ContentLength, limit)
		if err == nil {
			lift() // a refused body keeps its deadline: nothing waits for the rest
		} else if isTimeout(err) && !time.Now().Before(deadline) {
			// body_timeout's own deadline; a timeout before it is the
			// server's read_body, which Caddy's error handling answers
			err = errBodyTimeout
		}
		return bd, err
	}
	return readInto(src, r.ContentLength, limit)
}

// expectsContinue reports whether r's client waits for 100 Continue
// before it sends its body (HTTP/1.1 Expect: 100-continue).
func expectsContinue(r *http.Request) bool {
	return r.ProtoMajor == 1 && r.ProtoMinor >= 1 && r.ContentLength != 0 && headerHasToken(r.Header.Get("Expect"), "100-continue")
}

// closeUnlessRead makes the answer to a request whose client waits for 100
// Continue close the connection, unless its body is read (continueReader
// lifts it). net/http does so itself for a body left unread, but Caddy
// replaces the request's Body with its own reader, which hides the
// expectation from net/http: it would then read the body the client never
// sends before the answer goes out, and the client would get nothing until
// a read timeout.
func closeUnlessRead(w http.ResponseWriter, r *http.Request) {
	if expectsContinue(r) {
		w.Header().Set("Connection", "close")
	}
}

// continueReader is the body of a request that expects 100 Continue: its
// first read sends 100 Continue, and the client then sends the body, so
// the answer need not close the connection (closeUnlessRead) any more.
type continueReader struct {
	io.Reader
	h    http.Header
	read bool
}

func (c *continueReader) Read(p []byte) (int, error) {
	if !c.read {
		c.read = true
		c.h.Del("Connection")
	}
	return c.Reader.Read(p)
}

// readInto reads src, want bytes (-1: unknown, to EOF), into a buffer
// that grows as bytes arrive, counted among the bodies being received.
func readInto(src io.Reader, want, limit int64) (*body, error) {
	bodies.receiving.Add(1)
	defer bodies.receiving.Add(-1)
	bd := &body{}
	for {
		if len(bd.data) == cap(bd.data) {
			if int64(len(bd.data)) > limit {
				bd.release()
				return nil, &http.MaxBytesError{Limit: limit}
			}
			size := max(2*int64(cap(bd.data)), firstBodyBuffer)
			if want >= 0 {
				size = min(size, want)
			} else {
				size = min(size, limit+1) // one more byte tells a body that is too large
			}
			if !bodies.reserve(bd.held, size-int64(cap(bd.data))) {
				bd.release()
				return nil, errBodyMemory
			}
			bd.held += size - int64(cap(bd.data))
			grown := make([]byte, len(bd.data), size)
			copy(grown, bd.data)
			bd.data = grown
		}
		n, err := src.Read(bd.data[len(bd.data):cap(bd.data)])
		bd.data = bd.data[:len(bd.data)+n]
		switch {
		case err == io.EOF && (want < 0 || int64(len(bd.data)) == want):
			if int64(len(bd.data)) > limit {
				bd.release()
				return nil, &http.MaxBytesError{Limit: limit}
			}
			if want < 0 && cap(bd.data)-len(bd.data) > len(bd.data)/8 {
				// A body of unknown length ends in a buffer up to twice
				// its size, which a store would keep while it charges
				// the body's length: it keeps an exact copy instead.
				bd.data = append([]byte(nil), bd.data...)
			}
			return bd, nil
		case err == io.EOF:
			bd.release()
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			bd.release()
			return nil, err
		case want >= 0 && int64(len(bd.data)) == want:
			return bd, nil
		}
	}
}

// bodyDeadline bounds reading the rest of r's body by deadline, through the
// connection's read deadline (which Caddy's own idle read timeout respects
// as a ceiling), or, where the protocol has none, by closing the body when
// the time is up. The returned function lifts it.
func bodyDeadline(w http.ResponseWriter, r *http.Request, deadline time.Time) (lift func()) {
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(deadline); err == nil {
		return func() { _ = rc.SetReadDeadline(time.Time{}) }
	}
	t := time.AfterFunc(time.Until(deadline), func() { _ = r.Body.Close() })
	return func() { t.Stop() }
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
