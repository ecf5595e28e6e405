package caddypush

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"

	"github.com/coder/websocket"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestValidateLeavesRunningStoreAlone validates (provisions without
// starting) a config with other limits in the process that runs the tests'
// Caddy: the running store keeps its limit and no goroutine is left behind.
func TestValidateLeavesRunningStoreAlone(t *testing.T) {
	startMain(t)
	limit := memoryCase.store.(pushstore.Budget).MaxBytes()
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(strings.Replace(
		strings.Replace(mainConfig, "max_reserved_memory 64M", "max_reserved_memory 1M", 1),
		"admin localhost:2999", "admin off", 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := runtime.NumGoroutine()
	var cfg caddy.Config
	if err := caddy.StrictUnmarshalJSON(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validate: %v", err)
	}
	if got := memoryCase.store.(pushstore.Budget).MaxBytes(); got != limit {
		t.Fatalf("validate changed the running store's limit: %d -> %d", limit, got)
	}
	if refs, _ := stores.References(memoryPoolKey); refs != 2 { // TestMain + the running config
		t.Fatalf("store references after validate: %d, want 2", refs)
	}
	waitFor(t, "goroutines to settle", func() bool { return runtime.NumGoroutine() <= before })
}

// TestRefusedReloadLeavesRunningLimits loads configs that Caddy refuses
// because an app starts after push and fails (a port taken): the running
// config keeps its max_reserved_memory and max_body_memory. Before, the
// refused config's push app, when it started first (Go's map order: about
// half the loads), had applied its own, and the running config answered
// 507 past 1 MiB. Each load is tried 20 times to cover both orders.
func TestRefusedReloadLeavesRunningLimits(t *testing.T) {
	startMain(t)
	st := memoryCase.store.(pushstore.Budget)
	limit, bodyLimit := st.MaxBytes(), bodies.max.Load()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	bad := strings.Replace(mainConfig, "max_reserved_memory 64M", "max_reserved_memory 1M\n\t\tmax_body_memory 1k", 1) +
		"http://" + ln.Addr().String() + " {\n\trespond ok\n}\n"
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(bad), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := caddy.Load(cfgJSON, true); err == nil {
			t.Fatal("a config with a port taken loaded")
		}
		if st.MaxBytes() != limit || bodies.max.Load() != bodyLimit {
			t.Fatalf("after refused load %d the running config's limits are %d and %d, want %d and %d",
				i+1, st.MaxBytes(), bodies.max.Load(), limit, bodyLimit)
		}
	}
	if r := publish(t, "/pub", chanName(t, "a"), "still served"); r.status != 201 && r.status != 202 {
		t.Fatalf("the running config after the refused loads: %d", r.status)
	}
}

// TestRefusedAfterStartedLeavesRunningLimits: Caddy may refuse a config
// after every app started and its started event came (here its admin
// config loader is unknown): the running config's limits come back when
// the refused one is cleaned up (they stayed the refused config's).
func TestRefusedAfterStartedLeavesRunningLimits(t *testing.T) {
	startMain(t)
	st := memoryCase.store.(pushstore.Budget)
	limit, bodyLimit := st.MaxBytes(), bodies.max.Load()
	bad := strings.Replace(mainConfig, "max_reserved_memory 64M", "max_reserved_memory 1M\n\t\tmax_body_memory 1k", 1)
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(bad), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	admin, _ := cfg["admin"].(map[string]any)
	admin["config"] = map[string]any{"load": map[string]any{"module": "no_such_loader"}}
	if cfgJSON, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfgJSON, true); err == nil {
		t.Fatal("a config with an unknown config loader loaded")
	}
	if st.MaxBytes() != limit || bodies.max.Load() != bodyLimit || runningStore.Load() == nil {
		t.Fatalf("after the refused load the running config's limits are %d and %d (want %d and %d), store %v",
			st.MaxBytes(), bodies.max.Load(), limit, bodyLimit, runningStore.Load())
	}
	if r := publish(t, "/pub", chanName(t, "a"), "still served"); r.status != 201 && r.status != 202 {
		t.Fatalf("the running config after the refused load: %d", r.status)
	}
}

// rawExchange sends raw bytes on a new connection, optionally half-closes
// it, and returns the first response's status line.
func rawExchange(t *testing.T, req string, closeWrite bool) string {
	t.Helper()
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = conn.(*net.TCPConn).CloseWrite()
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading status: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestSlowAndLyingPublishers(t *testing.T) { forEachStore(t, testSlowAndLyingPublishers) }

func testSlowAndLyingPublishers(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	// Slowloris: 10 of 100 bytes, then nothing: 408 after read_body (2s).
	start := time.Now()
	status := rawExchange(t, "POST /pub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789", false)
	if !strings.HasPrefix(status, "HTTP/1.1 408") {
		t.Fatalf("stalled body: %q", status)
	}
	t.Logf("stalled body answered %q after %v", status, time.Since(start).Round(time.Millisecond))
	// Content-Length larger than the body sent: 400, nothing stored.
	status = rawExchange(t, "POST /pub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nshort", true)
	if !strings.HasPrefix(status, "HTTP/1.1 400") {
		t.Fatalf("short body: %q", status)
	}
	if _, err := current.store.Info("/" + ch); err == nil {
		t.Fatal("a failed publish created or filled the channel")
	}
	// Content-Length over the limit: 413 before any body is read.
	status = rawExchange(t, "POST /pub/small?id="+ch+" HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999\r\n\r\n", false)
	if !strings.HasPrefix(status, "HTTP/1.1 413") {
		t.Fatalf("huge Content-Length: %q", status)
	}
	// Content-Length smaller than the body: exactly that many bytes are the
	// message; the rest is not a request.
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /pub?id=%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhelloEXTRA BYTES\r\n\r\n", ch)
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 202 {
		t.Fatalf("first response: %v %v", res, err)
	}
	io.Copy(io.Discard, res.Body)
	if res, err = http.ReadResponse(br, nil); err != nil || res.StatusCode != 400 {
		t.Fatalf("trailing bytes: %v %v", res, err)
	}
	if s := do(t, h1Client, "GET", base+"/sub?id="+ch, nil); s.body != "hello" {
		t.Fatalf("stored %q, want hello", s.body)
	}
}

// TestSubscriberThatNeverReads parks a subscriber that never reads its
// response beside normal ones, then publishes 1 MiB messages: the others
// get every message and the publisher is never held up.
func TestSubscriberThatNeverReads(t *testing.T) { forEachStore(t, testSubscriberThatNeverReads) }

func testSubscriberThatNeverReads(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	stuck, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	fmt.Fprintf(stuck, "GET /sub?id=%s HTTP/1.1\r\nHost: localhost\r\n\r\n", ch)
	waitFor(t, "stuck waiter", func() bool { return waiters(t, "/"+ch) == 1 })
	var cur cursor
	for i := range 5 {
		got := make(chan resp, 2)
		for range 2 {
			getAsync(h1Client, base+"/sub?id="+ch, got, cur.headers()...)
		}
		want := 2
		if i == 0 {
			want = 3 // the stuck one is still parked for the first message
		}
		waitFor(t, "waiters", func() bool { return waiters(t, "/"+ch) == want })
		body := strings.Repeat(fmt.Sprint(i), 1<<20)
		if r := do(t, h1Client, "POST", base+"/pub/big?id="+ch, strings.NewReader(body)); r.status != 201 {
			t.Fatalf("publish %d: %d", i, r.status)
		}
		for range 2 {
			r := <-got
			if r.status != 200 || r.body != body {
				t.Fatalf("message %d: %d, %d bytes", i, r.status, len(r.body))
			}
			cur = r.cursor()
		}
	}
}

// TestExampleRefusesOutsidePublishers loads example.Caddyfile (on test
// ports) and publishes from 127.0.0.2, which the example does not allow,
// and from 127.0.0.1, which it does.
func TestExampleRefusesOutsidePublishers(t *testing.T) {
	// The example's 10M budget applies to the pooled store, which holds
	// what earlier tests (and earlier runs, under -count) left: empty it.
	st := memoryCase.store
	for after, pages := "", 0; pages < 100; pages++ {
		page, next, err := st.Channels("", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			_, _ = st.Delete(c.Key)
		}
		if after = next; next == "" {
			break
		}
	}
	example, err := os.ReadFile("example.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(example), "{\n", globalOptions, 1)
	cfg = strings.Replace(cfg, ":8080 {", ":9080 {", 1)
	if cfg == string(example) || !strings.Contains(cfg, ":9080 {") {
		t.Fatal("could not rewrite example.Caddyfile for the test")
	}
	load(caddytest.NewTester(t), cfg)
	outside := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")},
	}).DialContext}}
	ch := chanName(t, "a")
	r := do(t, outside, "POST", "http://127.0.0.1:9080/publish?id="+ch, strings.NewReader("intruder"))
	if r.status != 403 || r.body != "Publishing is allowed from this machine only." {
		t.Fatalf("publish from 127.0.0.2: %d %q", r.status, r.body)
	}
	if _, err := memoryCase.store.Info("/" + ch); err == nil {
		t.Fatal("a refused publish created the channel")
	}
	if r := do(t, h1Client, "POST", "http://127.0.0.1:9080/publish?id="+ch, strings.NewReader("local")); r.status != 202 {
		t.Fatalf("publish from 127.0.0.1: %d %q", r.status, r.body)
	}
	if r := do(t, outside, "GET", "http://127.0.0.1:9080/activity?id="+ch, nil); r.status != 200 || r.body != "local" {
		t.Fatalf("subscribe from 127.0.0.2: %d %q", r.status, r.body)
	}
	if r := do(t, outside, "GET", "http://127.0.0.1:9080/", nil); r.status != 200 || !strings.Contains(r.body, "caddy-push") {
		t.Fatalf("file_server root: %d", r.status)
	}
}

var freshClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

// TestReloadStorm reloads the config 20 times, each with another
// max_reserved_memory, while 1000 subscribers re-poll one channel and
// messages are published between reloads: every subscriber gets every
// message once, in order, and the last limit is in force.
func TestReloadStorm(t *testing.T) { forEachStore(t, testReloadStorm) }

func testReloadStorm(t *testing.T) {
	tester := startMain(t)
	ch := chanName(t, "s")
	const subs, reloads, perReload = 1000, 20, 2
	const total = reloads * perReload
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	got := make([][]string, subs)
	errs := make(chan error, subs)
	var wg sync.WaitGroup
	for i := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cur cursor
			for failures := 0; len(got[i]) < total; {
				r, err := doCtx(ctx, h1Client, "GET", base+"/sub?id="+ch, nil, cur.headers()...)
				if err != nil || r.status != 200 {
					// A reload closes connections of the old server: ask again.
					if failures++; failures > 50 || ctx.Err() != nil {
						errs <- fmt.Errorf("subscriber %d: %v %d", i, err, r.status)
						return
					}
					continue
				}
				got[i] = append(got[i], r.body)
				cur = r.cursor()
			}
		}()
	}
	waitFor(t, "1000 waiters", func() bool { return waiters(t, "/"+ch) == subs })
	for n := range reloads {
		for j := range perReload {
			// A fresh connection each time: a reload closes the old server's
			// idle keep-alive connections, and a POST must not be retried.
			r := do(t, freshClient, "POST", base+"/pub/big?id="+ch, strings.NewReader(fmt.Sprintf("m%02d", n*perReload+j)))
			if r.status != 201 && r.status != 202 {
				t.Fatalf("publish: %d", r.status)
			}
		}
		limit := fmt.Sprintf("max_reserved_memory %dM", 40+n)
		load(tester, strings.Replace(current.config, "max_reserved_memory 64M", limit, 1))
		if got := current.store.MaxBytes(); got != int64(40+n)<<20 {
			t.Fatalf("after reload %d the limit is %d", n, got)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var want []string
	for i := range total {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	for i := range subs {
		if fmt.Sprint(got[i]) != fmt.Sprint(want) {
			t.Fatalf("subscriber %d got %v", i, got[i])
		}
	}
	load(tester, current.config)
}

// TestHeaderRewriteDoesNotLeak delivers one message through a route whose
// `header` rule rewrites the Etag in place, then through a plain route: the
// rewrite must stay in its own response.
func TestHeaderRewriteDoesNotLeak(t *testing.T) { forEachStore(t, testHeaderRewriteDoesNotLeak) }

func testHeaderRewriteDoesNotLeak(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "x")
	for range 2 {
		if r := do(t, h1Client, "GET", base+"/sub/rewrite?id="+ch, nil); r.header.Get("Etag") != "rewritten-0" {
			t.Fatalf("rewritten Etag = %q", r.header.Get("Etag"))
		}
	}
	if r := do(t, h1Client, "GET", base+"/sub?id="+ch, nil); r.header.Get("Etag") != "0" || r.header.Get("Vary") != "If-None-Match, If-Modified-Since" {
		t.Fatalf("plain route after a rewrite: Etag %q Vary %q", r.header.Get("Etag"), r.header.Get("Vary"))
	}
}

// TestPanicInStreamIsContained makes a stream's goroutine panic (in its
// timer's tick, the goroutine of a detached stream or a WebSocket's, which
// no handler recovers) and a WebSocket's reader panic (in a frame a client
// publishes): each ends its own stream, its subscription is cancelled, and
// the process goes on serving the same channels.
func TestPanicInStreamIsContained(t *testing.T) {
	startMain(t)
	var armed atomic.Bool
	tick := func(p *pump) {
		if p.ping == 77*time.Millisecond && armed.CompareAndSwap(true, false) {
			panic("a test's panic in a stream's tick")
		}
	}
	testHookTick.Store(&tick)
	defer testHookTick.Store(nil)

	// ended reads what a stream sends until it ends; pings and the
	// opening comment are all it may send first.
	ended := func(what string, read func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() {
			for {
				if err := read(); err != nil {
					done <- err
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still open after its goroutine panicked", what)
		}
	}
	subscribers := func(ch string) int { return waiters(t, "/"+ch) }

	ch := chanName(t, "es")
	armed.Store(true)
	victim := openSSE(t, h1Client, base+"/s/panic?id="+ch)
	ended("an EventSource stream", func() error {
		ev, err := victim.next()
		if err == nil && (ev.event != "ping" && len(ev.comments) == 0 || ev.hasData) {
			t.Errorf("the victim got %+v", ev)
		}
		return err
	})
	waitFor(t, "the victim's subscription cancelled", func() bool { return subscribers(ch) == 0 })
	s := openSSE(t, h1Client, base+"/s/panic?id="+ch)
	publish(t, "/pub", ch, "after the panic")
	if ev := s.message(t); ev.data != "after the panic" {
		t.Fatalf("after the panic: %+v", ev)
	}
	s.close() // the next tick's panic is the WebSocket's
	waitFor(t, "the stream closed", func() bool { return subscribers(ch) == 0 })

	ch = chanName(t, "ws")
	armed.Store(true)
	wv := openWS(t, base+"/s/panic?id="+ch, nil)
	ended("a WebSocket", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, data, err := wv.Read(ctx)
		if err == nil {
			t.Errorf("the victim got %q", data)
		}
		return err
	})
	waitFor(t, "the victim's subscription cancelled", func() bool { return subscribers(ch) == 0 })
	w := openWS(t, base+"/s/panic?id="+ch, nil)
	publish(t, "/pub", ch, "after the panic")
	if _, got := wsRead(t, w); got != "after the panic" {
		t.Fatalf("after the panic: %q", got)
	}

	// A frame that makes the reader panic ends that publisher's
	// connection; another publishes on the channel as before.
	ch = chanName(t, "reader")
	frame := func(data []byte) {
		if string(data) == "panic now" {
			panic("a test's panic in a websocket's reader")
		}
	}
	testHookFrame.Store(&frame)
	defer testHookFrame.Store(nil)
	sub := openSSE(t, h1Client, base+"/sub?id="+ch)
	pv := openWS(t, base+"/ps/ws?id="+ch, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pv.Write(ctx, websocket.MessageText, []byte("panic now")); err != nil {
		t.Fatal(err)
	}
	ended("a publishing WebSocket", func() error {
		_, data, err := pv.Read(ctx)
		if err == nil {
			t.Errorf("the publisher got %q", data)
		}
		return err
	})
	pw := openWS(t, base+"/ps/ws?id="+ch, nil)
	if err := pw.Write(ctx, websocket.MessageText, []byte("published after the panic")); err != nil {
		t.Fatal(err)
	}
	if ev := sub.message(t); ev.data != "published after the panic" {
		t.Fatalf("the subscriber got %+v", ev)
	}
	// The panicking frame's body goes back to max_body_memory, as the
	// other's does once published (it was held for good when a panic
	// skipped its release).
	waitFor(t, "the bodies' memory back", func() bool { return bodies.used.Load() == 0 })
}
