package caddypush

import (
	"fmt"
	"sync"
	"testing"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore/storetest"
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
			wg.Go(func() { readSSE(t, i, s, total, &results[i]) })
		case i < 20:
			c := openWS(t, p.url+"/sub?id="+ch, nil)
			wg.Go(func() { readWS(t, i, c, false, total, &results[i]) })
		default:
			wg.Go(func() { readLongPoll(t, i, p.url+"/sub?id="+ch, total, &results[i]) })
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
				if r := tryPost(t, p.url+"/pub/big?id="+ch, fmt.Sprintf("%d-%d", n, j)); r.status != 201 && r.status != 202 {
					t.Errorf("publish: %d %q", r.status, r.body)
				}
			}
		})
	}
	pwg.Wait()
	wg.Wait()
	storetest.OnceInOneOrder(t, results, total)
}
