package pushstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestMemoryStoreConformance runs the store contract's suite on the
// memory store.
func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *storetest.Harness {
		clk := &clock{t: time.Unix(1_700_000_000, 0)}
		s := pushstore.NewMemoryStore(64<<20, clk.now)
		return &storetest.Harness{Store: s, Advance: clk.advance, Sweep: func() { s.Sweep() }}
	})
}
