package caddypush

import (
	"sync"
	"time"
)

// This file holds the count of streams on hijacked connections, which the
// exit waits for.

// hijacked counts the streams running on connections taken over from the
// HTTP server (WebSockets, and direct HTTP/1.1 streams): its shutdown does
// not wait for them; the push app does, briefly, at exit (see
// stoppingHandler). Streams still open while it waits (the servers accept
// until the process goes), which a sync.WaitGroup does not allow: an Add
// from zero during a Wait panics.
var hijacked streamCount

// streamCount is a count of running streams that can be waited on while
// streams come and go.
type streamCount struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n reaches 0; nil when nobody waits
}

// Add counts a stream that starts.
func (c *streamCount) Add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

// Done uncounts a stream that ended.
func (c *streamCount) Done() {
	c.mu.Lock()
	c.n--
	if c.n == 0 && c.zero != nil {
		close(c.zero)
		c.zero = nil
	}
	c.mu.Unlock()
}

// wait waits up to d for the count to reach zero, and reports whether it
// did.
func (c *streamCount) wait(d time.Duration) bool {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return true
	}
	if c.zero == nil {
		c.zero = make(chan struct{})
	}
	zero := c.zero
	c.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-zero:
		return true
	case <-t.C:
		return false
	}
}
