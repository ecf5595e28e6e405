package redisstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// TestPublishNotRetried: a publication whose answer is late (Redis busy
// past read_timeout) fails, and is not sent again. go-redis retried it on
// other connections of the pool, and Redis ran each attempt, storing the
// message once per attempt (three times) while the publisher got 503.
func TestPublishNotRetried(t *testing.T) {
	srv := redistest.Start(t)
	s := impatientStore(t, []string{srv.Addr()}, "retry:")
	testNotRetried(t, s, srv.Addr(), []string{srv.Addr()})
}

// impatientStore starts a store on addrs whose calls time out after 100
// ms, subscribed, with channel c made (touch).
func impatientStore(t *testing.T, addrs []string, prefix string) *Store {
	t.Helper()
	s, err := New(Options{Addresses: addrs, KeyPrefix: prefix, ReadTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { _ = s.Close() })
	waitFor(t, "the notes subscription", s.subscribed.Load)
	touch(t, s)
	return s
}

// touch makes channel c, which loads the scripts, on a store whose
// read_timeout of 100 ms a loaded machine may pass: tried until it works.
func touch(t *testing.T, s *Store) {
	waitFor(t, "channel c made", func() bool {
		_, err := s.Touch("c", time.Hour)
		return err == nil
	})
}

// testNotRetried publishes on channel c of s while Redis at addr (the
// node that holds c) is busy, then checks the publication ran once at most.
// A marker publication, by a store on addrs with go-redis's default
// timeouts, comes after the calls Redis could not read while busy.
func testNotRetried(t *testing.T, s *Store, addr string, addrs []string) {
	var wg sync.WaitGroup
	for range 8 { // idle connections in the pool, as a store that served some load has
		wg.Go(func() { _, _ = s.Info("c") })
	}
	wg.Wait()
	busy := stallRedis(t, addr)
	if _, err := s.Publish("c", &pushstore.Message{Body: []byte("once")}, pub()); err == nil {
		t.Fatal("a publication was answered while Redis was busy past read_timeout")
	}
	if err := <-busy; err != nil {
		t.Fatal(err)
	}
	// The calls Redis could not read while busy run now, in the order they
	// came, before a publication that comes after.
	after, err := New(Options{Addresses: addrs, KeyPrefix: "retry:"})
	if err != nil {
		t.Fatal(err)
	}
	after.Start()
	t.Cleanup(func() { _ = after.Close() })
	if _, err := after.Publish("c", &pushstore.Message{Body: []byte("marker")}, pub()); err != nil {
		t.Fatal(err)
	}
	ids, err := after.client.ZRange(context.Background(), s.Keys("c")[1], 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) > 2 {
		t.Fatalf("one publication that failed was stored %d times", len(ids)-1)
	}
}

// TestPublishNotRetriedOnCluster: the same on a Cluster, where go-redis
// retries a call that failed on its own (on the same node, then another)
// however many retries the client is given.
func TestPublishNotRetriedOnCluster(t *testing.T) {
	nodes := redistest.Cluster(t)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.Addr())
	}
	s := impatientStore(t, addrs, "retry:")
	cc := s.client.(*redis.ClusterClient)
	node, err := cc.MasterForKey(context.Background(), s.Keys("c")[1])
	if err != nil {
		t.Fatal(err)
	}
	testNotRetried(t, s, node.Options().Addr, addrs)
}

// stallRedis makes Redis at addr run a script of another application for
// 600 ms (under busy-reply-threshold: other clients get no answer at all
// meanwhile) and returns once two pings in a row went unanswered; the
// returned channel gets the script's result when it ends.
func stallRedis(t *testing.T, addr string) <-chan error {
	t.Helper()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = admin.Close() })
	ctx := context.Background()
	busy := make(chan error, 1)
	go func() {
		busy <- admin.Eval(ctx, `local t = redis.call('TIME') local s = t[1] * 1000000 + t[2]
			repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > 600000 return 1`, nil).Err()
	}()
	probe := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 20 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = probe.Close() })
	unanswered := 0
	waitFor(t, "Redis to be busy", func() bool {
		if probe.Ping(ctx).Err() == nil {
			unanswered = 0
			return false
		}
		unanswered++
		return unanswered == 2
	})
	return busy
}
