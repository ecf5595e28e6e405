package caddypush

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/redisstore"
)

// testSkew moves the integration store's clock forward, so expiry tests
// need no sleeps.
var testSkew atomic.Int64

func skewedNow() time.Time { return time.Now().Add(time.Duration(testSkew.Load())) }

func TestMain(m *testing.M) {
	countParked = true // the tests read the parked streams' counters
	// The pooled store every config of the test process uses, made here
	// with the skewable clock before any config is loaded; this reference
	// keeps it alive as long as the tests.
	v, _, err := stores.LoadOrNew(memoryPoolKey, func() (caddy.Destructor, error) {
		return pooled{pushstore.NewMemoryStore(DefaultMaxReservedMemory, skewedNow)}, nil
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	memoryCase.store = v.(pooled).Store.(testStore)
	code := m.Run()
	redistest.CloseShared()
	os.Exit(code)
}

// testStore is what the tests need of a store: the contract with its
// budget and inspection, and a sweep they can run at once.
type testStore interface {
	pushstore.Store
	pushstore.Budget
	pushstore.Inspector
	Sweep() int
}

// storeCase is one store the core suite runs against: its config (mainConfig
// with that store) and the pooled store that config uses.
type storeCase struct {
	name   string
	config string
	store  testStore
}

var memoryCase = &storeCase{name: "memory", config: mainConfig}

// current is the store case of the running test; helpers read it.
var current = memoryCase

var (
	redisCaseOnce sync.Once
	redisCaseVal  *storeCase
)

// redisCase returns the Redis store case: the shared redis-server, and the
// store pre-seeded in the pool (with the skewable clock) under the key the
// config's backend computes. It skips t without redis-server (see
// redistest.Require).
func redisCase(t *testing.T) *storeCase {
	t.Helper()
	srv := redistest.Shared(t)
	redisCaseOnce.Do(func() {
		b := &RedisBackend{Addresses: []string{srv.Addr()}, KeyPrefix: "test:"}
		if err := b.Provision(caddy.Context{}); err != nil {
			panic(err)
		}
		v, _, err := stores.LoadOrNew(b.PoolKey(), func() (caddy.Destructor, error) {
			st, err := b.NewStore(0)
			if err == nil {
				st.(*redisstore.Store).SetClockSkew(func() time.Duration { return time.Duration(testSkew.Load()) })
			}
			return pooled{st}, err
		})
		if err != nil {
			panic(err)
		}
		redisCaseVal = &storeCase{name: "redis", store: v.(pooled).Store.(testStore), config: strings.Replace(mainConfig,
			"store memory", "store redis {\n\t\t\taddress "+srv.Addr()+"\n\t\t\tkey_prefix test:\n\t\t}", 1)}
	})
	return redisCaseVal
}

// forEachStore runs a test once per store: memory, then Redis (skipped
// without redis-server, see redistest.Require).
func forEachStore(t *testing.T, test func(t *testing.T)) {
	t.Run("memory", test)
	t.Run("redis", func(t *testing.T) {
		current = redisCase(t)
		defer func() { current = memoryCase }()
		test(t)
	})
}

const base = "http://localhost:9080"

const globalOptions = `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	skip_install_trust
	servers {
		protocols h1 h2c
		timeouts {
			read_body 2s
		}
	}
`

// mainConfig has one route per behaviour under test.
const mainConfig = globalOptions + `	push {
		max_reserved_memory 64M
		store memory
	}
}
:9080 {
	route /pub {
		push_publisher
	}
	route /sub {
		push_subscriber
	}
	route /pub/big {
		push_publisher {
			max_message_buffer_length 1000
		}
	}
	route /pub/off {
		push_publisher {
			store_messages off
		}
	}
	route /pub/short {
		push_publisher {
			message_timeout 10s
			channel_timeout 5s
		}
	}
	route /pub/small {
		push_publisher {
			max_message_size 1k
		}
	}
	route /pub/recip {
		push_publisher {
			min_message_recipients 2
		}
	}
	route /poll {
		push_subscriber interval-poll
	}
	route /sub/first {
		push_subscriber {
			concurrency first
		}
	}
	route /sub/last {
		push_subscriber {
			concurrency last
		}
	}
	route /sub/max2 {
		push_subscriber {
			max_channel_subscribers 2
		}
	}
	route /sub/auth {
		push_subscriber {
			authorized_channels_only on
		}
	}
	route /sub/timeout {
		push_subscriber {
			timeout 1s
		}
	}
	route /sub/newest {
		push_subscriber {
			first_message newest
		}
	}
	route /pub/grp {
		push_publisher {
			channel_group g1
		}
	}
	route /sub/grp {
		push_subscriber {
			channel_group g1
		}
	}
	route /pub/idlen {
		push_publisher {
			max_channel_id_length 8
		}
	}
	route /pub/hdr {
		push_publisher {
			channel_id {header.X-Channel}
			allow_origin https://example.com
		}
	}
	route /pub/ph {
		header {
			defer
			X-Push-Channel {http.push.channel_id}
			X-Push-Message {http.push.message_id}
			X-Push-Subscribers {http.push.subscribers}
		}
		push_publisher
	}
	route /sub/ph {
		header {
			defer
			X-Push-Message {http.push.message_id}
		}
		push_subscriber
	}
	route /sub/rewrite {
		header {
			defer
			Etag "^(.*)$" "rewritten-$1"
		}
		push_subscriber
	}
	route /gz/sub {
		encode gzip {
			minimum_length 1
		}
		push_subscriber
	}
	push_subscriber /s/timeout {
		timeout 1s
	}
	push_subscriber /s/multi {
		channel_id {query.a} {query.b} {query.c}
	}
	push_subscriber /s/split long-poll interval-poll eventsource websocket {
		channel_id {query.ids}
		channel_id_split_delimiter ,
	}
	push_subscriber /s/poll interval-poll {
		channel_id {query.ids}
		channel_id_split_delimiter ,
	}
	push_subscriber /s/raw http-raw-stream {
		http_raw_stream_separator --
	}
	push_subscriber /s/raw0 http-raw-stream {
		http_raw_stream_separator ""
	}
	push_subscriber /s/lp long-poll
	push_subscriber /s/lpmp long-poll {
		longpoll_multipart_response on
	}
	push_subscriber /s/lpraw long-poll {
		nchan_longpoll_multipart_response raw;
		timeout 1s
	}
	push_publisher /p/ev {
		eventsource_event pubev
	}
	push_publisher /p/evq {
		eventsource_event {query.ev}
	}
	push_subscriber /s/ev eventsource {
		nchan_eventsource_event $arg_ev;
	}
	push_subscriber /s/lpmpx long-poll {
		channel_id {query.ids}
		channel_id_split_delimiter ,
		longpoll_multipart_response on
	}
	push_subscriber /s/small eventsource websocket {
		stream_queue_size 64k
	}
	push_subscriber /s/last {
		concurrency last
		allow_origin https://ok.example
	}
	push_subscriber /s/cred {
		allow_origin https://app.example
		nchan_access_control_allow_credentials on
	}
	push_subscriber /s/first {
		concurrency first
	}
	push_subscriber /s/ping {
		eventsource_ping_interval 100ms
		websocket_ping_interval 100ms
	}
	push_subscriber /s/ping/said eventsource {
		eventsource_ping_interval 100ms
		nchan_eventsource_ping_comment keepalive
		nchan_eventsource_ping_event ""
		nchan_eventsource_ping_data "{\"t\": 1}"
	}
	push_subscriber /s/ping/none eventsource {
		eventsource_ping_interval 100ms
		eventsource_ping_event ""
	}
	push_subscriber /s/panic {
		eventsource_ping_interval 77ms
		websocket_ping_interval 77ms
	}
	push_subscriber /s/tail {
		first_message -2
	}
	push_subscriber /s/second {
		first_message 2
	}
	push_subscriber /s/auth {
		authorized_channels_only on
	}
	push_pubsub /ps {
		max_message_size 1k
	}
	push_pubsub /ps/ws websocket
	push_pubsub /ps/hb {
		websocket_client_heartbeat PING PONG
	}
	push_subscriber /s/hb websocket {
		nchan_websocket_client_heartbeat PING PONG
	}
	push_publisher /p/ws websocket {
		max_message_size 1k
	}
	push_publisher /p/http http
}
`

// load loads a Caddyfile into the in-process Caddy (a reload when one is
// running) and drops the clients' idle connections: they belong to the old
// server, which closes them, and a POST sent on one would fail.
func load(tester *caddytest.Tester, cfg string) {
	tester.InitServer(cfg, "caddyfile")
	h1Client.CloseIdleConnections()
	h2Client.CloseIdleConnections()
}

// startMain loads the current store case's main config into the
// in-process Caddy.
func startMain(t *testing.T) *caddytest.Tester {
	t.Helper()
	tester := caddytest.NewTester(t)
	load(tester, current.config)
	return tester
}

var h1Client = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 4096,
	DisableCompression:  true,
}}

var h2Client = func() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols), DisableCompression: true}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}
}()

// resp is a read response.
type resp struct {
	status int
	header http.Header
	body   string
	proto  int
}

func do(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr ...string) resp {
	t.Helper()
	r, err := doCtx(context.Background(), c, method, url, body, hdr...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func doCtx(ctx context.Context, c *http.Client, method, url string, body io.Reader, hdr ...string) (resp, error) {
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return resp{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: res.StatusCode, header: res.Header, body: string(b), proto: res.ProtoMajor}, nil
}

// roundRequested reads `"requested": 1` in a channel's JSON info as 0: the
// seconds since the last request are whole seconds, and one may begin
// between the request and the answer.
func roundRequested(body string) string {
	return strings.Replace(body, `"requested": 1,`, `"requested": 0,`, 1)
}

// tryPost POSTs a text/plain message from a goroutine other than the
// test's, which must not stop the test (t.Fatal): a failed request is
// reported and answers status 0.
func tryPost(t testing.TB, url, body string) resp {
	r, err := doCtx(context.Background(), h1Client, "POST", url, strings.NewReader(body), "Content-Type", "text/plain")
	if err != nil {
		t.Errorf("POST %s: %v", url, err)
	}
	return r
}

// getAsync sends a GET in a goroutine and delivers the response (or the
// error, as its body) on out.
func getAsync(c *http.Client, url string, out chan<- resp, hdr ...string) {
	go func() {
		r, err := doCtx(context.Background(), c, "GET", url, nil, hdr...)
		if err != nil {
			r.body = err.Error()
		}
		out <- r
	}()
}

// publish POSTs a text/plain message and returns the response.
func publish(t testing.TB, path, ch, body string) resp {
	t.Helper()
	return do(t, h1Client, "POST", base+path+"?id="+ch, strings.NewReader(body), "Content-Type", "text/plain")
}

// cursor is what a subscriber echoes back.
type cursor struct{ lastModified, etag string }

func (c cursor) headers() []string {
	var h []string
	if c.lastModified != "" {
		h = append(h, "If-Modified-Since", c.lastModified)
	}
	if c.etag != "" {
		h = append(h, "If-None-Match", c.etag)
	}
	return h
}

func (r resp) cursor() cursor {
	return cursor{r.header.Get("Last-Modified"), r.header.Get("Etag")}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 10*time.Second, what, cond)
}

// waitWithin polls cond until it holds, failing after d.
func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waiters returns how many long-polls wait on a channel key.
func waiters(t testing.TB, key string) int {
	info, _ := current.store.Info(key)
	return info.Subscribers
}

// chanName makes a channel id unique to the test, and to its run under
// -count: the store and Redis keep what an earlier run of the same test
// published.
func chanName(t testing.TB, suffix string) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	if n := testRun(t); n > 1 {
		name += "-r" + strconv.Itoa(n)
	}
	return name + "-" + suffix
}

var runs struct {
	sync.Mutex
	of    map[testing.TB]int // a running test's run of its name
	names map[string]int     // runs of each name so far
}

// testRun is which run of its name t is: 1, or more under -count.
func testRun(t testing.TB) int {
	runs.Lock()
	defer runs.Unlock()
	if n, ok := runs.of[t]; ok {
		return n
	}
	if runs.of == nil {
		runs.of, runs.names = map[testing.TB]int{}, map[string]int{}
	}
	runs.names[t.Name()]++
	n := runs.names[t.Name()]
	runs.of[t] = n
	t.Cleanup(func() {
		runs.Lock()
		delete(runs.of, t)
		runs.Unlock()
	})
	return n
}

// forwardAuthConfig is mainConfig with a route at path that asks the auth
// service at authURL (forward_auth, uri /check) before subscriber, a
// push_subscriber line or block.
func forwardAuthConfig(path, authURL, subscriber string) string {
	return strings.Replace(mainConfig, ":9080 {", ":9080 {\n\troute "+path+" {\n\t\tforward_auth "+
		strings.TrimPrefix(authURL, "http://")+" {\n\t\t\turi /check\n\t\t}\n\t\t"+subscriber+"\n\t}", 1)
}
