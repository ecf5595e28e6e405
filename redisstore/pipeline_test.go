package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestPipelinedPublications: publications of many channels that come while
// maxInFlight others are held in Redis wait, and go together, as
// one script call, when those answer; each is published as if alone (its
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
	// A batch's calls go as one script call (up to maxGroups).
	if batched, scripts := s.pipe.batched.Load(), s.pipe.scripts.Load(); scripts >= batched || scripts*maxGroups < batched {
		t.Errorf("%d batched publications took %d script calls", batched, scripts)
	}
	if calls >= n+maxInFlight { // each in flight may be sent twice (NOSCRIPT)
		t.Errorf("Redis ran %d scripts for %d publications", calls, n)
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

// TestMergedPublications: the calls of one batch run as one script, each
// as if it ran alone: a publication wakes its channel's long-poll, one
// pushes the oldest message out of its channel's buffer, and two calls of
// one channel (different options, so not coalesced) take ids in the order
// they came.
func TestMergedPublications(t *testing.T) {
	s, admin := coalesceStore(t)
	small := pub()
	small.MaxBufferLength = 2
	for _, body := range []string{"o1", "o2"} {
		if _, err := s.Publish("o", &pushstore.Message{Body: []byte(body)}, small); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Publish("w", &pushstore.Message{Body: []byte("w0")}, pub()); err != nil {
		t.Fatal(err)
	}
	poll, err := s.Subscribe("w", pushstore.SubscribeRequest{Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || poll.Sub == nil {
		t.Fatalf("long-poll: %+v, %v", poll, err)
	}
	defer poll.Sub.Cancel()
	other := pub()
	other.MessageTimeout = time.Minute
	// The first maxInFlight go to Redis at once; the four after them wait
	// and go together.
	calls := []struct {
		key  string
		opts pushstore.PublishOptions
	}{{"f0", pub()}, {"f1", pub()}, {"f2", pub()}, {"f3", pub()}, {"w", pub()}, {"o", small}, {"same", pub()}, {"same", other}}
	gathered := func() int {
		s.pipe.mu.Lock()
		defer s.pipe.mu.Unlock()
		return s.pipe.inFlight + len(s.pipe.waiting) - 1
	}
	var next atomic.Int64
	results, _ := together(t, []*redis.Client{admin}, len(calls), gathered, func() (pushstore.PublishResult, error) {
		i := next.Add(1) - 1
		return s.Publish(calls[i].key, &pushstore.Message{Body: []byte(fmt.Sprint("m", i))}, calls[i].opts)
	})
	if batched, scripts := s.pipe.batched.Load(), s.pipe.scripts.Load(); batched != 4 || scripts != 1 {
		t.Fatalf("%d publications went in %d batched script calls, want 4 in 1", batched, scripts)
	}
	if r := results[4]; r.Delivered != 1 {
		t.Errorf("the publication on w delivered to %d, want its long-poll", r.Delivered)
	}
	if got := take(t, poll.Sub); got != "m4" {
		t.Errorf("the long-poll on w got %q, want m4", got)
	}
	if r := results[5]; r.Info.Messages != 2 {
		t.Errorf("the publication on o reports %d stored, want 2", r.Info.Messages)
	}
	for i, want := range []string{"o2", "m5"} {
		got, err := s.Subscribe("o", pushstore.SubscribeRequest{Start: pushstore.Start{At: i + 1}}) // 1: the oldest
		if err != nil || got.Message == nil || string(got.Message.Body) != want {
			t.Errorf("o's message %d: %v (%v), want %s", i, got.Message != nil && string(got.Message.Body) == want, err, want)
		}
	}
	if !results[7].ID.After(results[6].ID) {
		t.Errorf("the second call on same took %v, the first %v", results[7].ID, results[6].ID)
	}
	for i, r := range results[:4] {
		if r.Info.Messages != 1 || r.Delivered != 0 {
			t.Errorf("publication %d: %+v", i, r)
		}
	}
}

// TestMergedGroupFails: in a script that runs several channels' calls, a
// call that fails (its channel's meta key holds a string) gets Redis's
// error, alone: the calls before and after it in the script are answered
// and stored as if alone, and the store does not take the refusal for an
// outage.
func TestMergedGroupFails(t *testing.T) {
	s, admin := coalesceStore(t)
	ctx := context.Background()
	if err := admin.Set(ctx, s.Keys("bad")[0], "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	keys := []string{"f0", "f1", "f2", "f3", "a", "bad", "b"} // the first maxInFlight go alone
	gathered := func() int {
		s.pipe.mu.Lock()
		defer s.pipe.mu.Unlock()
		return s.pipe.inFlight + len(s.pipe.waiting) - 1
	}
	type answer struct {
		r   pushstore.PublishResult
		err error
	}
	var next atomic.Int64
	results, _ := together(t, []*redis.Client{admin}, len(keys), gathered, func() (answer, error) {
		k := keys[next.Add(1)-1]
		r, err := s.Publish(k, &pushstore.Message{Body: []byte("m" + k)}, pub())
		return answer{r, err}, nil // each call's error is checked below
	})
	if batched, scripts := s.pipe.batched.Load(), s.pipe.scripts.Load(); batched != 3 || scripts != 1 {
		t.Fatalf("%d publications went in %d batched script calls, want 3 in 1", batched, scripts)
	}
	for i, k := range keys {
		got := results[i]
		if k == "bad" {
			if got.err == nil || !strings.Contains(got.err.Error(), "WRONGTYPE") {
				t.Errorf("the call on bad answered %+v, %v; want Redis's WRONGTYPE", got.r, got.err)
			}
			continue
		}
		n, err := admin.ZCard(ctx, s.Keys(k)[1]).Result()
		if got.err != nil || got.r.Info.Messages != 1 || err != nil || n != 1 {
			t.Errorf("the call on %s answered %+v, %v; %d stored (%v)", k, got.r, got.err, n, err)
		}
	}
	if s.down.Load() {
		t.Error("the store took a refused call for Redis being down")
	}
}
