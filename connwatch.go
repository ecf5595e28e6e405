package caddypush

import (
	"context"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// This file: seeing an HTTP/1.x client leave while its request waits.
//
// A long-poll, and a stream that stays on net/http's response (behind
// encode, say: not direct), learn that their client left from the
// request's context, which net/http cancels when its background read of
// the connection ends. But that read stops at the first byte a client
// sends after its request (a pipelined request, to net/http), and from
// then on nothing watches the connection until a write fails: on a quiet
// channel without pings, never. The request would wait for good, holding
// its goroutines and socket, and count as a subscriber (concurrency first
// refusing everyone else, max_channel_subscribers). So such a request's
// connection is also looked at, every connProbe, by one goroutine for all:
// a connection whose client closed it (the kernel's TCP state; nothing is
// read) ends the wait as the context would. Direct streams and WebSockets
// read their connection themselves; HTTP/2 and HTTP/3 cancel the context.

// connProbe is how often a waiting HTTP/1.x request's connection is looked at.
const connProbe = 5 * time.Second

// connCtxKey holds the connection a request came on (registerConn).
type connCtxKey struct{}

// registerConn has the server that provisions a handler keep each
// connection in its requests' contexts, as Caddy's documentation asks of
// a module that needs the connection.
func registerConn(ctx caddy.Context) {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return
	}
	srv.RegisterConnContext(func(ctx context.Context, c net.Conn) context.Context {
		if ctx.Value(connCtxKey{}) != nil {
			return ctx // another handler of the server registered it
		}
		return context.WithValue(ctx, connCtxKey{}, c)
	})
}

// watchConn has the connection probe watch r's connection (HTTP/1.x
// only: nil otherwise); its Gone is closed if the client closes it. The
// caller ends the watch (unwatch) when the request is over.
func watchConn(r *http.Request) *watched {
	if r.ProtoMajor != 1 || !canProbe {
		return nil
	}
	c, _ := r.Context().Value(connCtxKey{}).(net.Conn)
	for c != nil {
		u, ok := c.(interface{ NetConn() net.Conn }) // TLS
		if !ok {
			break
		}
		c = u.NetConn()
	}
	if c == nil {
		return nil
	}
	raw := rawOf(c)
	if raw == nil {
		return nil
	}
	w := &watched{raw: raw, gone: make(chan struct{})}
	watching.add(w)
	return w
}

// leftOrGone returns what is closed when r's client leaves: its context's
// Done, and on HTTP/1.x also when the connection probe finds the client
// closed the connection. The watch ends with the request.
func leftOrGone(r *http.Request) <-chan struct{} {
	w := watchConn(r)
	if w == nil {
		return r.Context().Done()
	}
	context.AfterFunc(r.Context(), w.leave)
	return w.gone
}

// watched is a waiting request's connection.
type watched struct {
	raw  syscall.RawConn
	gone chan struct{}
	once sync.Once
}

// Gone is closed when the client closed the connection (nil for no watch).
func (w *watched) Gone() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.gone
}

// leave closes gone and ends the watch.
func (w *watched) leave() {
	w.once.Do(func() {
		close(w.gone)
		watching.remove(w)
	})
}

// unwatch ends the watch of w (nil: none).
func unwatch(w *watched) {
	if w != nil {
		watching.remove(w)
	}
}

// watchList is the connections being watched, and their prober, which
// runs while there are any.
type watchList struct {
	mu      sync.Mutex
	m       map[*watched]struct{}
	running bool
}

var watching = watchList{m: map[*watched]struct{}{}}

func (l *watchList) add(w *watched) {
	l.mu.Lock()
	l.m[w] = struct{}{}
	start := !l.running
	l.running = true
	l.mu.Unlock()
	if start {
		go l.probe()
	}
}

func (l *watchList) remove(w *watched) {
	l.mu.Lock()
	delete(l.m, w)
	l.mu.Unlock()
}

// probe looks at every watched connection each connProbe, and leaves once
// none is left.
func (l *watchList) probe() {
	t := time.NewTicker(connProbe)
	defer t.Stop()
	var batch []*watched
	for range t.C {
		l.mu.Lock()
		if len(l.m) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		batch = batch[:0]
		for w := range l.m {
			batch = append(batch, w)
		}
		l.mu.Unlock()
		for _, w := range batch {
			if peerClosed(w.raw) {
				w.leave()
			}
		}
		clear(batch)
	}
}
