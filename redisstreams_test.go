package caddypush

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/caddypush/caddy-push/internal/redistest"
)

// TestRedisStreamsLoseNothing runs two Caddy instances on one Redis, with
// 5 EventSource, 5 WebSocket and 5 long-poll subscribers on each, while 4
// publishers (two on each instance) send 1000 numbered messages to the
// channel: every subscriber gets all 1000, once, in the one order.
func TestRedisStreamsLoseNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	a, b, _ := twoInstances(t, srv.Addr())
	ch := "mix"
	const publishers, each = 4, 250
	total := publishers * each
	results := make([][]string, 30)
	var wg sync.WaitGroup
	for i := range 30 {
		p := a
		if i%2 == 1 {
			p = b
		}
		switch {
		case i < 10:
			s := openSSE(t, h1Client, p.url+"/sub?id="+ch)
			wg.Go(func() {
				for len(results[i]) < total {
					ev, err := s.next()
					if err != nil {
						t.Errorf("EventSource %d: %v after %d", i, err, len(results[i]))
						return
					}
					if ev.hasData {
						results[i] = append(results[i], ev.data)
					}
				}
			})
		case i < 20:
			c := openWS(t, p.url+"/sub?id="+ch, nil)
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
				defer cancel()
				for len(results[i]) < total {
					_, data, err := c.Read(ctx)
					if err != nil {
						t.Errorf("WebSocket %d: %v after %d", i, err, len(results[i]))
						return
					}
					results[i] = append(results[i], string(data))
				}
			})
		default:
			wg.Go(func() {
				var cur cursor
				for len(results[i]) < total {
					r, err := doCtx(context.Background(), h1Client, "GET", p.url+"/sub?id="+ch, nil, cur.headers()...)
					if err != nil || r.status != 200 {
						t.Errorf("long-poll %d: %v %d after %d", i, err, r.status, len(results[i]))
						return
					}
					results[i] = append(results[i], r.body)
					cur = r.cursor()
				}
			})
		}
	}
	waitFor(t, "the 20 streams counted across instances", func() bool { return a.subscribers(t, ch) >= 20 })
	var pwg sync.WaitGroup
	for n := range publishers {
		p := a
		if n%2 == 1 {
			p = b
		}
		pwg.Go(func() {
			for j := range each {
				if r := post(t, p.url+"/pub/big?id="+ch, fmt.Sprintf("%d-%d", n, j)); r.status != 201 && r.status != 202 {
					t.Errorf("publish: %d %q", r.status, r.body)
				}
			}
		})
	}
	pwg.Wait()
	wg.Wait()
	for i, got := range results {
		seen := map[string]bool{}
		for _, m := range got {
			if seen[m] {
				t.Fatalf("subscriber %d got %s twice", i, m)
			}
			seen[m] = true
		}
		if len(seen) != total {
			t.Fatalf("subscriber %d got %d distinct of %d", i, len(seen), total)
		}
		if strings.Join(got, ",") != strings.Join(results[0], ",") {
			t.Fatalf("subscriber %d saw another order", i)
		}
	}
	_ = websocket.MessageText
}
