package redisstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestPipelinedPublications: publications of many channels that come while
// maxInFlight others are held in Redis wait, and go together, as
// pipelines, when those answer; each is published as if alone (its
// own id, its channel holding its message). The scripts were flushed from
// Redis first, so every call also goes through the NOSCRIPT fallback, in
// flight and in the batch.
func TestPipelinedPublications(t *testing.T) {
	s, admin := coalesceStore(t)
	testPipelined(t, s, []*redis.Client{admin})
}

func testPipelined(t *testing.T, s *Store, admins []*redis.Client) {
	for _, admin := range admins {
		if err := admin.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const n = maxInFlight + 10
	gathered := func() int { // the calls in flight or waiting, but the first
		s.pipe.mu.Lock()
		defer s.pipe.mu.Unlock()
		return s.pipe.inFlight + len(s.pipe.waiting) - 1
	}
	var next atomic.Int64
	results, calls := together(t, admins, n, gathered, func() (pushstore.PublishResult, error) {
		k := next.Add(1)
		return s.Publish(fmt.Sprint("p", k), &pushstore.Message{Body: []byte(fmt.Sprint("m", k))}, pub())
	})
	// The 10 that waited go in at most maxInFlight batches, one per turn
	// that ends (the turns end about together once Redis lets go), so at
	// least 10-(maxInFlight-1) of them in batches of more than one.
	if got, least := s.pipe.batched.Load(), uint64(n-maxInFlight-(maxInFlight-1)); got < least || got > n-maxInFlight {
		t.Errorf("%d publications went in a batch of more than one, want %d to %d", got, least, n-maxInFlight)
	}
	if calls < n {
		t.Errorf("Redis ran %d scripts for %d publications, want one each", calls, n)
	}
	for i, r := range results {
		if r.ID.Time == 0 || r.Delivered != 0 {
			t.Errorf("publication %d: id %v, delivered to %d", i, r.ID, r.Delivered)
		}
		if r.Info.Messages != 1 {
			t.Errorf("publication %d: %d stored, want 1", i, r.Info.Messages)
		}
	}
	for k := 1; k <= n; k++ {
		got, err := s.Subscribe(fmt.Sprint("p", k), pushstore.SubscribeRequest{HasCursor: true})
		if err != nil || got.Message == nil || string(got.Message.Body) != fmt.Sprint("m", k) {
			t.Fatalf("channel p%d: %+v, %v", k, got, err)
		}
		if got.Message.ID != results[k-1].ID {
			// results are in the order the calls came, which is k's
			t.Errorf("channel p%d holds %v, its publication answered %v", k, got.Message.ID, results[k-1].ID)
		}
	}
}
