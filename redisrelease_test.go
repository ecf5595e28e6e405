package caddypush

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/internal/redistest"
)

// TestRedisReleasesCountsOnStopAndDisconnect parks waiters on 20 channels
// of instance A (5 of them with `concurrency first`), lets some clients
// leave, then stops A gracefully (SIGTERM): instance B must see no waiter
// left on any channel, and accept a new `first` subscriber at once. Every
// count a waiter leaves in Redis is taken back by a script whose answer
// the store reads; a script that answered a bare number made every one of
// these calls fail (and log an outage), leaving the counts behind.
func TestRedisReleasesCountsOnStopAndDisconnect(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	a, b, _ := twoInstances(t, srv.Addr())
	const channels = 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	leaving, leave := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range channels {
		path := "/sub"
		if i < 5 {
			path = "/sub/first"
		}
		wg.Go(func() { _, _ = doCtx(ctx, h1Client, "GET", fmt.Sprintf("%s%s?id=rel%d", a.url, path, i), nil) })
		if i%4 == 0 { // a second waiter that will leave
			wg.Go(func() { _, _ = doCtx(leaving, h1Client, "GET", fmt.Sprintf("%s/sub?id=rel%d", a.url, i), nil) })
		}
	}
	for i := range channels {
		want := 1
		if i%4 == 0 && i >= 5 {
			want = 2
		}
		waitFor(t, "the waiters counted", func() bool { return b.subscribers(t, fmt.Sprint("rel", i)) >= want })
	}
	leave()
	for i := 8; i < channels; i += 4 {
		waitFor(t, "the waiters that left uncounted", func() bool { return b.subscribers(t, fmt.Sprint("rel", i)) == 1 })
	}
	if log, _ := os.ReadFile(a.log); strings.Contains(string(log), "redis unavailable") {
		t.Fatalf("clients leaving were logged as a Redis outage:\n%s", log)
	}

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		t.Fatal("instance A did not exit within 15 s of SIGTERM")
	}
	wg.Wait()
	for i := range channels {
		if n := b.subscribers(t, fmt.Sprint("rel", i)); n != 0 {
			t.Errorf("channel rel%d: %d waiters still counted after A stopped", i, n)
		}
	}
	for i := range 5 {
		got := make(chan resp, 1)
		getAsync(h1Client, fmt.Sprintf("%s/sub/first?id=rel%d", b.url, i), got)
		waitFor(t, "the new first subscriber counted", func() bool { return b.subscribers(t, fmt.Sprint("rel", i)) == 1 })
		select {
		case r := <-got:
			t.Fatalf("a new `first` subscriber on B after A stopped: %d, want it to wait", r.status)
		default:
		}
		post(t, b.url+fmt.Sprintf("/pub?id=rel%d", i), "bye")
		if r := <-got; r.status != 200 {
			t.Fatalf("the new `first` subscriber got %d", r.status)
		}
	}
}

// TestRedisKeepaliveKeepsEveryChannel parks a waiter on each of 20
// channels whose channel_timeout is one second, waits well past it, and
// publishes to each: every channel must still count its waiter (201), so
// the keepalives refreshed all of them. (A keepalive script that answered
// a bare number stopped the sweep at its first channel each second, so
// the others' keys expired under their waiters and publishes said 202.)
func TestRedisKeepaliveKeepsEveryChannel(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	p := runCaddyGlobal(t, redisGlobal(srv.Addr(), fmt.Sprintf("keep%d:", time.Now().UnixNano())), redisSite)
	const channels = 20
	results := make(chan resp, channels)
	for i := range channels {
		if r := do(t, h1Client, "PUT", fmt.Sprintf("%s/pub/short?id=ka%d", p.url, i), nil); r.status != 200 {
			t.Fatalf("PUT: %d", r.status)
		}
		getAsync(h1Client, fmt.Sprintf("%s/sub?id=ka%d", p.url, i), results)
	}
	for i := range channels {
		waitFor(t, "the waiters counted", func() bool { return p.subscribers(t, fmt.Sprint("ka", i)) == 1 })
	}
	time.Sleep(4 * time.Second) // no signal to await: the keys must outlive their timeout
	for i := range channels {
		if r := post(t, fmt.Sprintf("%s/pub/short?id=ka%d", p.url, i), "still here"); r.status != 201 {
			t.Errorf("channel ka%d after 4 s: publish answered %d, want 201 (its waiter counted)", i, r.status)
		}
	}
	for range channels {
		if r := <-results; r.status != 200 || r.body != "still here" {
			t.Fatalf("waiter got %d %q", r.status, r.body)
		}
	}
}
