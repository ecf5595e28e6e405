package redisstore

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// TestSilentNotesConnection: an instance's connections to Redis go silent
// (the Redis host gone without a reset, a partition): nothing comes back
// and nothing is closed, while new connections work. A long-poll parked
// there still gets the next publication, made by another instance: the
// listener's PING after a quiet spell gets no PONG, so its connection is
// dropped and the subscription made again on a new one, and the recheck
// that follows, which first fails on a silent pooled connection, is tried
// again. Before, the PONG was never awaited and the long-poll stayed deaf
// (until the kernel gave up on the connection, about 15 minutes), and a
// failed recheck was not tried again until some later notification.
func TestSilentNotesConnection(t *testing.T) {
	a, b, px := silentPair(t, "silent:")
	res, err := a.Subscribe("c", pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	defer res.Sub.Cancel()
	var wg sync.WaitGroup
	for range 4 { // idle connections in a's pool, silent too: the recheck's call fails on one
		wg.Go(func() { _, _ = a.Info("c") })
	}
	wg.Wait()
	px.silence()
	if _, err := b.Publish("c", &pushstore.Message{Body: []byte("m1")}, pub()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-res.Sub.Ready():
	case <-time.After(20 * time.Second):
		t.Fatalf("the long-poll is deaf 20 s after the publication (subscribed %v)", a.subscribed.Load())
	}
	if ds, end := res.Sub.Take(nil); len(ds) != 1 || string(ds[0].Message.Body) != "m1" {
		t.Fatalf("the long-poll got %d deliveries (end %v), want m1", len(ds), end)
	}
}

// silentPair starts two stores on one redis-server, a (its connections
// through a faultProxy, with 300 ms timeouts, its listener and rechecks on
// short times) and b, both subscribed.
func silentPair(t *testing.T, prefix string) (a, b *Store, px *faultProxy) {
	retry := recheckRetry
	recheckRetry = 100 * time.Millisecond
	t.Cleanup(func() { recheckRetry = retry })
	return proxiedPair(t, redistest.Start(t), prefix, &redis.Options{MaxRetries: -1,
		ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
}

// proxiedPair starts two stores on srv, a (its client made with opts, its
// connections through a faultProxy, its listener on short times) and b,
// both subscribed.
func proxiedPair(t *testing.T, srv *redistest.Server, prefix string, opts *redis.Options) (a, b *Store, px *faultProxy) {
	quiet, pong := notesQuiet, pongWait
	notesQuiet, pongWait = 200*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { notesQuiet, pongWait = quiet, pong })
	px = newFaultProxy(t, srv.Addr())
	opts.Addr = px.ln.Addr().String()
	a = NewFromClient(redis.NewClient(opts), prefix, 0, nil)
	a.Start()
	t.Cleanup(func() { _ = a.Close() })
	b = startOn(t, srv, prefix)
	waitFor(t, "a subscribed", a.subscribed.Load)
	waitFor(t, "b subscribed", b.subscribed.Load)
	return a, b, px
}

// faultProxy is a TCP proxy to Redis for a store's connections, with the
// faults of a network: silence makes the connections open now go silent
// (what they carry is dropped both ways, and they are never closed), cut
// closes them (a reset, or Redis's client-output-buffer-limit), and hold
// makes new connections close at once. Connections opened after a silence
// or a cut work.
type faultProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	epoch int // connections opened before it are silent
	conns []net.Conn
	held  bool // new connections are closed at once
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			held := p.held
			p.mu.Unlock()
			if held {
				_ = c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			born := p.epoch
			p.mu.Unlock()
			go p.pipe(u, c, born)
			go p.pipe(c, u, born)
		}
	}()
	return p
}

func (p *faultProxy) silence() {
	p.mu.Lock()
	p.epoch++
	p.mu.Unlock()
}

// cut closes every connection open now.
func (p *faultProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// hold makes new connections close at once (on), or work again.
func (p *faultProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.mu.Unlock()
}

func (p *faultProxy) pipe(dst, src net.Conn, born int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			_ = dst.Close()
			return
		}
		p.mu.Lock()
		silent := p.epoch > born
		p.mu.Unlock()
		if silent {
			continue // dropped, and the connection kept open
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			_ = src.Close()
			return
		}
	}
}

// TestStreamMissesDisplacement: a `last` subscriber on another instance
// displaces a stream while the stream's instance hears nothing (its
// connections silent): when that instance subscribes again and catches the
// stream up, the stream ends Displaced. Before, the catch-up found the
// channel there and the stream went on, displaced but streaming and
// counted nowhere.
func TestStreamMissesDisplacement(t *testing.T) {
	a, b, px := silentPair(t, "displace:")
	subA, err := a.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Cancel()
	px.silence()
	subB, err := b.Follow([]string{"c"}, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20, Concurrency: pushstore.Last})
	if err != nil {
		t.Fatal(err)
	}
	defer subB.Cancel()
	if _, err := b.Publish("c", &pushstore.Message{Body: []byte("after")}, pub()); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case <-subA.Ready():
		case <-deadline:
			t.Fatal("a's stream neither ended nor got anything 20 s after it was displaced")
		}
		ds, end := subA.Take(nil)
		if len(ds) > 0 {
			t.Fatalf("a's stream, displaced, got %q (end %v)", ds[0].Message.Body, end)
		}
		if end != pushstore.Open {
			if end != pushstore.Displaced {
				t.Fatalf("a's stream ended %v, want Displaced", end)
			}
			return
		}
	}
}
