package caddypush

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
)

// TestEventSourceOverHTTP3: events arrive one by one over HTTP/3 (QUIC),
// as over HTTP/1.1 and HTTP/2.
func TestEventSourceOverHTTP3(t *testing.T) {
	tester := startMain(t)
	cfg := strings.Replace(mainConfig, ":9080 {", "https://localhost:9443 {\n\ttls internal\n\tpush_publisher /tls/pub\n\tpush_subscriber /tls/sub\n}\n:9080 {", 1)
	load(tester, strings.Replace(cfg, "protocols h1 h2c", "protocols h1 h2 h2c h3", 1))
	defer load(tester, mainConfig)
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // Caddy's internal CA
	defer tr.Close()
	h3 := &http.Client{Transport: tr}
	const tlsBase = "https://localhost:9443"
	waitFor(t, "HTTP/3 with the internal certificate", func() bool {
		r, err := doCtx(context.Background(), h3, "GET", tlsBase+"/tls/pub?id=x", nil)
		return err == nil && r.proto == 3
	})
	ch := chanName(t, "a")
	s := openSSE(t, h3, tlsBase+"/tls/sub?id="+ch)
	if s.resp.ProtoMajor != 3 {
		t.Fatalf("proto %d", s.resp.ProtoMajor)
	}
	for i := range 3 {
		do(t, h3, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader(fmt.Sprint("h3-", i)))
		if ev := s.message(t); ev.data != fmt.Sprint("h3-", i) {
			t.Fatalf("over HTTP/3: %+v", ev)
		}
	}
}

// TestTransportsCaddyfileLoads loads the Caddyfile of
// testdata/caddyfile_adapt/transports.caddyfiletest (every transport
// directive and subdirective as nchan users write them) into the server,
// and answers on its pub/sub and multiplexed locations.
func TestTransportsCaddyfileLoads(t *testing.T) {
	tester := startMain(t)
	data, err := os.ReadFile("testdata/caddyfile_adapt/transports.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	site, _, _ := strings.Cut(string(data), "----------")
	cfg := strings.Replace(mainConfig[:strings.Index(mainConfig, ":9080 {")], "", "", 1) + strings.Replace(site, ":8080 {", ":9080 {", 1)
	load(tester, cfg)
	defer load(tester, mainConfig)
	ch := chanName(t, "a")
	if r := do(t, h1Client, "POST", base+"/pubsub?id="+ch, strings.NewReader("hi")); r.status != 202 {
		t.Fatalf("POST on the pub/sub location: %d %q", r.status, r.body)
	}
	s := openSSE(t, h1Client, base+"/multi?ids="+ch+",other")
	if ev := s.message(t); ev.data != "hi" || !strings.Contains(ev.id, "[") {
		t.Fatalf("multiplexed: %+v", ev)
	}
}

// TestForwardAuthChecksEachSubscriberOnce puts Caddy's forward_auth in
// front of a subscriber location: the auth service sees the channel id
// of each long-poll and of each stream's handshake, once per request or
// connection (not per message), and its refusal is the subscriber's.
func TestForwardAuthChecksEachSubscriberOnce(t *testing.T) {
	var calls atomic.Int64
	var seen sync.Map
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		uri := r.Header.Get("X-Forwarded-Uri")
		seen.Store(uri, true)
		if strings.Contains(uri, "secret") && r.Header.Get("Authorization") != "Bearer ok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer auth.Close()
	tester := startMain(t)
	load(tester, forwardAuthConfig("/authed", auth.URL, "push_subscriber"))
	defer load(tester, mainConfig)

	ch := chanName(t, "secret")
	if r := do(t, h1Client, "GET", base+"/authed?id="+ch, nil); r.status != 401 {
		t.Fatalf("a long-poll without credentials: %d", r.status)
	}
	publish(t, "/pub", ch, "m1")
	before := calls.Load()
	s := openSSE(t, h1Client, base+"/authed?id="+ch, "Authorization", "Bearer ok")
	w := openWS(t, base+"/authed?id="+ch, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer ok"}}})
	for i := range 5 {
		if i > 0 {
			publish(t, "/pub", ch, fmt.Sprint("m", i+1))
		}
		if ev := s.message(t); ev.data != fmt.Sprint("m", i+1) {
			t.Fatalf("EventSource: %+v", ev)
		}
		if _, got := wsRead(t, w); got != fmt.Sprint("m", i+1) {
			t.Fatalf("WebSocket: %q", got)
		}
	}
	if n := calls.Load() - before; n != 2 {
		t.Fatalf("the auth service was asked %d times for two streams and five messages, want 2", n)
	}
	if _, ok := seen.Load("/authed?id=" + ch); !ok {
		t.Fatal("the auth service did not see the channel id")
	}
	do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil)
}

// TestStopClosesStreams runs `caddy stop` on a Caddy binary with open
// EventSource and WebSocket streams: each ends at once and cleanly (the
// EventSource with its last comment, the WebSocket with close 1001, as a
// WebSocket that publishes does), and the process exits. The access log
// names each subscriber's transport.
func TestStopClosesStreams(t *testing.T) {
	t.Parallel()
	logFile := t.TempDir() + "/access.log"
	p := runCaddy(t, pushSite+"\n\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}")
	s := openSSE(t, h1Client, p.url+"/sub?id=stop")
	w := openWS(t, p.url+"/sub?id=stop", nil)
	waitFor(t, "two streams", func() bool { return p.subscribers(t, "stop") == 2 })
	pw := openWS(t, p.url+"/pub?id=stop-pub", nil)
	if err := pw.Write(context.Background(), websocket.MessageText, []byte("published")); err != nil {
		t.Fatal(err)
	}
	if _, reply := wsRead(t, pw); !strings.HasPrefix(reply, "queued messages: 1\r\n") {
		t.Fatalf("the publishing socket's answer: %q", reply)
	}
	do(t, h1Client, "POST", p.url+"/pub?id=lp", strings.NewReader("m"))
	if r := do(t, h1Client, "GET", p.url+"/sub?id=lp", nil); r.status != 200 {
		t.Fatalf("a long-poll: %d", r.status)
	}
	start := time.Now()
	out, err := exec.Command(caddyBinary(t), "stop", "--address", p.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy stop: %v\n%s", err, out)
	}
	if got := s.ending(t); len(got) == 0 || got[len(got)-1] != ":503: 503 Service Unavailable" {
		t.Fatalf("EventSource at stop: %q", got)
	}
	if code, _ := wsClosed(t, w); code != websocket.StatusGoingAway {
		t.Fatalf("WebSocket at stop: %d", code)
	}
	if code, _ := wsClosed(t, pw); code != websocket.StatusGoingAway {
		t.Fatalf("publishing WebSocket at stop: %d", code)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("caddy did not exit within 15 s of caddy stop")
	}
	t.Logf("streams closed and process exited %v after caddy stop", time.Since(start).Round(time.Millisecond))
	log, _ := os.ReadFile(logFile)
	for _, tr := range []string{"eventsource", "websocket", "long-poll"} {
		if !strings.Contains(string(log), `"push_transport":"`+tr+`"`) {
			t.Fatalf("the access log does not name %s:\n%s", tr, log)
		}
	}
}

// TestDirectStreamOverTLS: an EventSource on HTTPS with HTTP/1.1 goes
// direct over the TLS connection, gets its messages and its end; it is
// never parked (a publisher does not write its TLS records).
func TestDirectStreamOverTLS(t *testing.T) {
	tester := startMain(t)
	cfg := strings.Replace(mainConfig, ":9080 {", "https://localhost:9443 {\n\ttls internal\n\tpush_publisher /tls/pub\n\tpush_subscriber /tls/sub\n}\n:9080 {", 1)
	load(tester, strings.Replace(cfg, "protocols h1 h2c", "protocols h1 h2 h2c", 1))
	defer load(tester, mainConfig)
	h1TLS := &http.Client{Transport: &http.Transport{
		TLSClientConfig:    &tls.Config{InsecureSkipVerify: true}, // Caddy's internal CA
		TLSNextProto:       map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression: true,
	}}
	const tlsBase = "https://localhost:9443"
	waitFor(t, "HTTPS with the internal certificate", func() bool {
		r, err := doCtx(context.Background(), h1TLS, "GET", tlsBase+"/tls/pub?id=x", nil)
		return err == nil && r.proto == 1
	})
	ch := chanName(t, "a")
	before := directStreams.Load()
	s := openSSE(t, h1TLS, tlsBase+"/tls/sub?id="+ch)
	if s.resp.ProtoMajor != 1 || s.resp.TLS == nil {
		t.Fatalf("proto %d, TLS %v", s.resp.ProtoMajor, s.resp.TLS != nil)
	}
	waitFor(t, "the stream to go direct", func() bool { return directStreams.Load()-before == 1 })
	sends := parkedSends.Load()
	for i := range 3 {
		do(t, h1TLS, "POST", tlsBase+"/tls/pub?id="+ch, strings.NewReader(fmt.Sprint("tls-", i)))
		if ev := s.message(t); ev.data != fmt.Sprint("tls-", i) {
			t.Fatalf("over TLS: %+v", ev)
		}
	}
	if n := parkedSends.Load() - sends; n != 0 {
		t.Fatalf("%d parked writes over TLS, want 0 (a publisher does not write TLS records)", n)
	}
	do(t, h1TLS, "DELETE", tlsBase+"/tls/pub?id="+ch, nil)
	if got := s.ending(t); len(got) == 0 || got[len(got)-1] != ":410: 410 Gone" {
		t.Fatalf("the end over TLS: %q", got)
	}
}
