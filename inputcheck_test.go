package caddypush

// This file: requests that must be refused, or answered at once, whatever
// a publisher or a client sends (a review of the inputs, 2026-11-29).

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestRefusedExpectContinueAnsweredAtOnce: a publisher that sends
// `Expect: 100-continue` waits for the server's word before it sends its
// body. A body the publisher refuses unread (413 here: its Content-Length
// is over max_message_size) must be answered at once, without a 100
// Continue, and the connection closed, as net/http does for a handler
// that does not read the body. Caddy replaces the request's Body with its
// idle-timeout reader, which hides the expectContinueReader from net/http:
// it then reads the unread body before the answer goes out, and the
// publisher, waiting for 100 Continue, gets nothing until a read timeout.
func TestRefusedExpectContinueAnsweredAtOnce(t *testing.T) {
	startMain(t)
	for _, path := range []string{"/pub/small?id=" + chanName(t, "a"), "/ps?id=" + chanName(t, "a"), "/pub?id="} {
		conn, err := net.Dial("tcp", "localhost:9080")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n", path)
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(10 * time.Second)) // past read_body (2s)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		took := time.Since(start)
		want := http.StatusRequestEntityTooLarge
		if strings.HasSuffix(path, "=") {
			want = http.StatusNotFound
		}
		if res.StatusCode != want || took > time.Second {
			t.Errorf("%s with Expect: 100-continue: %s after %v, want %d at once", path, res.Status, took.Round(time.Millisecond), want)
		}
	}
	// A body that is taken: 100 Continue, the body, 202, and the
	// connection goes on.
	conn, err := net.Dial("tcp", "localhost:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	ch := chanName(t, "b")
	fmt.Fprintf(conn, "POST /pub?id=%s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", ch)
	br := bufio.NewReader(conn)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, " 100 ") {
		t.Fatalf("want 100 Continue, got %q %v", line, err)
	}
	_, _ = br.ReadString('\n')
	fmt.Fprintf(conn, "hello")
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusAccepted || res.Close {
		t.Fatalf("accepted body: %v %v", res, err)
	}
	_ = res.Body.Close()
	fmt.Fprintf(conn, "GET /sub?id=%s HTTP/1.1\r\nHost: localhost\r\n\r\n", ch)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the connection after the accepted body: %v %v", res, err)
	}
}

// TestPubSubAllowNamesWhatItServes: a push_pubsub location's 405 names in
// Allow the methods it serves (RFC 9110 15.5.6), and its OPTIONS answer
// offers them in Access-Control-Allow-Methods: /ps publishes over http
// (POST and PUT work there), /ps/ws only over WebSocket (POST and PUT get
// 405, DELETE works; its preflight offered POST and PUT).
func TestPubSubAllowNamesWhatItServes(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	for _, tc := range []struct{ path, methods string }{
		{"/ps", "GET, POST, PUT, DELETE, OPTIONS"},
		{"/ps/ws", "GET, DELETE, OPTIONS"},
	} {
		post := do(t, h1Client, "POST", base+tc.path+"?id="+ch, strings.NewReader("x"))
		if served := post.status != http.StatusMethodNotAllowed; served != strings.Contains(tc.methods, "POST") {
			t.Fatalf("POST %s: %d; the test's methods are wrong", tc.path, post.status)
		}
		r := do(t, h1Client, "PATCH", base+tc.path+"?id="+ch, nil)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tc.methods {
			t.Errorf("PATCH %s: %d, Allow %q; want 405, Allow %q", tc.path, r.status, r.header.Get("Allow"), tc.methods)
		}
		o := do(t, h1Client, "OPTIONS", base+tc.path+"?id="+ch, nil)
		if got := o.header.Get("Access-Control-Allow-Methods"); got != tc.methods {
			t.Errorf("OPTIONS %s: %d, Access-Control-Allow-Methods %q; want %q", tc.path, o.status, got, tc.methods)
		}
	}
}

// TestTooManyChannelsRefusedCheaply: a subscriber naming more than 255
// channels is refused (403) before its ids are split into one string each:
// a 16 KiB query of commas (Caddy's default header limit) allocated 16
// bytes of string header per comma, 256 KiB per refused request, and 16
// MiB with a max_header_size of 1 MiB.
func TestTooManyChannelsRefusedCheaply(t *testing.T) {
	cc := ChannelConfig{ChannelID: "{query.ids}", ChannelIDSplitDelimiter: ","}
	cc.setDefaults()
	query := "ids=" + strings.Repeat(",", 1<<20)
	refuse := func() {
		r := httptest.NewRequest("GET", "/s?x", nil)
		r.URL.RawQuery = query
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		w := httptest.NewRecorder()
		if _, ok := cc.channelKeys(w, r); ok || w.Code != http.StatusForbidden {
			t.Fatalf("%d channels: %d, want 403", 1<<20, w.Code)
		}
	}
	// The limit itself: 255 channels (a trailing comma dropped), not 256.
	for ids, ok := range map[string]bool{strings.Repeat("a,", 254) + "a": true, strings.Repeat("a,", 255): true,
		strings.Repeat("a,", 255) + "a": false, strings.Repeat("a,", 256): false} {
		r := httptest.NewRequest("GET", "/s?ids="+ids, nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		if keys, got := cc.channelKeys(httptest.NewRecorder(), r); got != ok || (ok && len(keys) != 255) {
			t.Errorf("%d commas: %d channels, %v; want %v", strings.Count(ids, ","), len(keys), got, ok)
		}
	}
	refuse()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	refuse()
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 4<<20 {
		t.Fatalf("refusing a 1 MiB list of channels allocated %d MiB", grown>>20)
	} else {
		t.Logf("refusing a 1 MiB list of channels allocated %d KiB", grown>>10)
	}
}

// TestCaddyfileRefusesValuesItCannotUse: a value the directive cannot
// mean is a clear error with its line, not a setting silently different
// from what was written: an event name holding a line break (every
// message would keep its own name: eventName drops it at run time), and
// sizes humanize reads by other rules than ours (`1,5M` as 15 MB, a comma
// being a thousands separator to it; `1.5` as 1 byte; `0.5` as 0 bytes,
// which is then the 1 MiB default); an empty allow_origin (which the JSON's
// zero value makes the default, *: any origin, the widest there is).
func TestCaddyfileRefusesValuesItCannotUse(t *testing.T) {
	for _, line := range []string{
		"eventsource_event \"a\nb\"",
		"eventsource_event `ev\r`",
		"max_message_size 1,5M",
		"max_message_size 1.5",
		"max_message_size 0.5",
		`allow_origin ""`,
	} {
		cfg := ":8080 {\n\tpush_publisher {\n\t\t" + line + "\n\t}\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		if err == nil {
			t.Errorf("%q accepted: %s", line, out)
		} else if !strings.Contains(err.Error(), "Caddyfile:3") {
			t.Errorf("%q: %v, want the line", line, err)
		}
	}
}

// TestAdminListsIdsThatAreNotUTF8: channel ids are bytes (?id=%FF is one),
// and the admin listing's prefix finds them as the memory store does. The
// Redis store's SCAN pattern was escaped rune by rune, which wrote each
// byte that is not UTF-8 as U+FFFD (three other bytes): no key matched.
func TestAdminListsIdsThatAreNotUTF8(t *testing.T) { forEachStore(t, testAdminListsIdsThatAreNotUTF8) }

func testAdminListsIdsThatAreNotUTF8(t *testing.T) {
	startMain(t)
	prefix := chanName(t, "\xff")
	if r := publish(t, "/pub", url.QueryEscape(prefix+"a"), "x"); r.status != 202 {
		t.Fatalf("publish: %d", r.status)
	}
	if ids := listAll(t, prefix, 10); len(ids) != 1 {
		t.Fatalf("listing the channels under %q: %d, want 1", prefix, len(ids))
	}
}

// TestLineBreakInMessageHeaders: the X-EventSource-Event and Content-Type
// a message is stored with come from the request's headers, which other
// handlers may set from what a client sent (here Caddy's request_header
// with placeholders, which decode %0A): a line break in them wrote lines
// of the client's choosing into EventSource streams (a forged event) and
// multipart part headers, and on the Redis store, which keeps the content
// type and the event name before the body, each ended by a newline, it
// made another message body of the stored one. Such a publication is
// refused with 400 and a reason (or, were it taken, delivered as sent).
func TestLineBreakInMessageHeaders(t *testing.T) { forEachStore(t, testLineBreakInMessageHeaders) }

func testLineBreakInMessageHeaders(t *testing.T) {
	tester := startMain(t)
	load(tester, strings.Replace(current.config, "\troute /pub {\n", "\troute /pub/rh {\n\t\trequest_header X-EventSource-Event {query.ev}\n"+
		"\t\trequest_header Content-Type {query.ct}\n\t\tpush_publisher\n\t}\n\troute /pub {\n", 1))
	defer load(tester, current.config)
	ch := chanName(t, "a")
	q := "?id=" + ch + "&ev=" + url.QueryEscape("x\ndata: forged\n\nevent: y") + "&ct=" + url.QueryEscape("text/plain\r\n\r\nforged")
	r := do(t, h1Client, "POST", base+"/pub/rh"+q, strings.NewReader("real"))
	if r.status == http.StatusBadRequest && strings.Contains(r.body, "line break") {
		return // refused, with a reason
	}
	if r.status != 202 {
		t.Fatalf("publish: %d %q", r.status, r.body)
	}
	if lp := do(t, h1Client, "GET", base+"/sub?id="+ch, nil); lp.body != "real" {
		t.Errorf("long-poll: body %q, want %q", lp.body, "real")
	}
	s := openSSE(t, h1Client, base+"/sub?id="+ch)
	if ev := s.message(t); ev.data != "real" {
		t.Errorf("EventSource: the first event is %+v, want the data %q", ev, "real")
	}
}

// TestForwardAuthSeesEveryChannelOfASplitID: operations.md has an auth
// service behind forward_auth decide per channel from X-Forwarded-Uri. On
// a location that splits `ids` with ",", an auth service that reads the
// parameter as Go, Python, Flask, Express or nginx's $arg_ids do (the
// first value) authorizes `?ids=room&ids=SECRET` as the channel "room";
// the subscriber must not get SECRET's messages. A request that repeats a
// query argument its channel id reads is refused (400): Caddy's
// placeholder joined the values with ",", which the split then read as
// two channels.
func TestForwardAuthSeesEveryChannelOfASplitID(t *testing.T) {
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := url.Parse(r.Header.Get("X-Forwarded-Uri"))
		if err != nil {
			http.Error(w, "bad uri", http.StatusBadRequest)
			return
		}
		for _, id := range strings.Split(u.Query().Get("ids"), ",") {
			if strings.Contains(id, "secret") {
				http.Error(w, "no", http.StatusForbidden)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer auth.Close()
	tester := startMain(t)
	load(tester, forwardAuthConfig("/authsplit", auth.URL,
		"push_subscriber long-poll {\n\t\t\tchannel_id {query.ids}\n\t\t\tchannel_id_split_delimiter ,\n\t\t\ttimeout 1s\n\t\t}"))
	defer load(tester, mainConfig)

	secret, room := chanName(t, "secret"), chanName(t, "room")
	defer do(t, h1Client, "DELETE", base+"/pub?id="+secret, nil)
	publish(t, "/pub", secret, "the secret message")
	if r := do(t, h1Client, "GET", base+"/authsplit?ids="+room+","+secret, nil); r.status != 403 {
		t.Fatalf("the auth service did not refuse the secret channel: %d %q", r.status, r.body)
	}
	r := do(t, h1Client, "GET", base+"/authsplit?ids="+room+"&ids="+secret, nil)
	if r.status != 400 || strings.Contains(r.body, "the secret message") {
		t.Fatalf("?ids=room&ids=secret, authorized as room alone, was answered with the secret channel's message: %d %q",
			r.status, r.body)
	}
}
