package caddypush

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// TestMultiplexedStreams: one EventSource on three channels gets their
// backlog in publication order (nchan would sort it by time, tag and
// channel position), then live messages, with compound ids to resume
// from, which a resumed stream's ids go on from; a DELETE of any one
// channel ends it. A WebSocket with
// ws+meta.nchan gets the same ids.
func TestMultiplexedStreams(t *testing.T) { forEachStore(t, testMultiplexedStreams) }

func testMultiplexedStreams(t *testing.T) {
	startMain(t)
	a, b, c := chanName(t, "a"), chanName(t, "b"), chanName(t, "c")
	url := base + "/s/multi?a=" + a + "&b=" + b + "&c=" + c
	publish(t, "/pub", c, "c1")
	publish(t, "/pub", a, "a1")
	publish(t, "/pub", b, "b1")
	s := openSSE(t, h1Client, url)
	var ids []string
	for _, want := range []string{"c1", "a1", "b1"} {
		ev := s.message(t)
		if ev.data != want {
			t.Fatalf("backlog out of publication order: got %q, want %q", ev.data, want)
		}
		ids = append(ids, ev.id)
	}
	if !strings.HasSuffix(ids[0], ",[0]") || !strings.Contains(ids[1], ":[0],") {
		t.Fatalf("compound ids %q", ids)
	}
	publish(t, "/pub", a, "a2")
	if ev := s.message(t); ev.data != "a2" {
		t.Fatalf("live: %+v", ev)
	}
	s.close()

	// Resume after a1: b1 then a2, the resumed stream's ids going on from
	// the one it resumed from (before, they started afresh, dropping the
	// other channels' tags, and a client resuming from one got a1 and c1
	// again).
	r := openSSE(t, h1Client, url, "Last-Event-ID", ids[1])
	var resumed []string
	for _, want := range []string{"b1", "a2"} {
		ev := r.message(t)
		if ev.data != want {
			t.Fatalf("resumed after %s: got %+v, want %q", ids[1], ev, want)
		}
		resumed = append(resumed, ev.id)
	}
	r2 := openSSE(t, h1Client, url, "Last-Event-ID", resumed[0])
	if ev := r2.message(t); ev.data != "a2" {
		t.Fatalf("resumed after %s (b1's id in a resumed stream): got %+v, want a2", resumed[0], ev)
	}
	r2.close()
	w := openWS(t, url+"&last_event_id="+queryEscape(ids[2]), &websocket.DialOptions{Subprotocols: []string{"ws+meta.nchan"}})
	if _, got := wsRead(t, w); !strings.HasPrefix(got, "id: ") || !strings.HasSuffix(got, "\n\na2") {
		t.Fatalf("WebSocket resumed after %s: %q", ids[2], got)
	}
	do(t, h1Client, "DELETE", base+"/pub?id="+b, nil)
	if got := r.ending(t); len(got) != 1 || got[0] != ":410: 410 Gone" {
		t.Fatalf("the end after a member's DELETE: %q", got)
	}
	if code, _ := wsClosed(t, w); code != websocket.StatusGoingAway {
		t.Fatalf("WebSocket close after a member's DELETE: %d", code)
	}
}

// TestMultiplexedPolls: a long-poll on several channels (one channel_id
// split by a delimiter) follows them with the compound id as
// Last-Modified and Etag, in publication order, and waits for the next
// message of any; an interval-poll answers 304; more than 255 channels
// get 403.
func TestMultiplexedPolls(t *testing.T) { forEachStore(t, testMultiplexedPolls) }

func testMultiplexedPolls(t *testing.T) {
	startMain(t)
	a, b := chanName(t, "a"), chanName(t, "b")
	url := base + "/s/split?ids=" + a + "," + b
	publish(t, "/pub", b, "b1")
	publish(t, "/pub", a, "a1")
	publish(t, "/pub", b, "b2")
	var cur cursor
	var got []string
	for range 3 {
		r := do(t, h1Client, "GET", url, nil, cur.headers()...)
		if r.status != 200 {
			t.Fatalf("poll: %d %q", r.status, r.body)
		}
		got, cur = append(got, r.body), r.cursor()
	}
	if fmt.Sprint(got) != "[b1 a1 b2]" || !strings.Contains(cur.etag, "[") {
		t.Fatalf("polls got %v, last Etag %q", got, cur.etag)
	}
	if r := do(t, h1Client, "GET", base+"/s/poll?ids="+a+","+b, nil, cur.headers()...); r.status != 304 {
		t.Fatalf("interval-poll with nothing new: %d", r.status)
	}
	waiting := make(chan resp, 1)
	getAsync(h1Client, url, waiting, cur.headers()...)
	waitFor(t, "the multiplexed long-poll waiting on both", func() bool { return waiters(t, "/"+a) == 1 && waiters(t, "/"+b) == 1 })
	publish(t, "/pub", a, "a2")
	if r := <-waiting; r.status != 200 || r.body != "a2" {
		t.Fatalf("the waiting long-poll: %d %q", r.status, r.body)
	}
	waitFor(t, "it left both channels", func() bool { return waiters(t, "/"+a) == 0 && waiters(t, "/"+b) == 0 })

	// One channel on a multiplexed location: a client that echoes its
	// Last-Modified and Etag moves on through messages of one second.
	for attempt := 0; ; attempt++ {
		c := chanName(t, fmt.Sprint("one", attempt))
		for i := range 3 {
			publish(t, "/pub", c, fmt.Sprint("o", i))
		}
		var cur cursor
		var got, times []string
		for range 3 {
			r := do(t, h1Client, "GET", base+"/s/split?ids="+c, nil, cur.headers()...)
			got, times, cur = append(got, r.body), append(times, r.header.Get("Last-Modified")), r.cursor()
		}
		if times[0] != times[1] && attempt < 5 {
			continue // o0 and o1 fell in two seconds: o1's tag is 0, try again
		}
		if fmt.Sprint(got) != "[o0 o1 o2]" {
			t.Fatalf("one channel, echoing the cursor: %v (last Etag %q)", got, cur.etag)
		}
		break
	}

	many := make([]string, 256)
	for i := range many {
		many[i] = fmt.Sprint("m", i)
	}
	if r := do(t, h1Client, "GET", base+"/s/split?ids="+strings.Join(many, ","), nil); r.status != 403 {
		t.Fatalf("256 channels: %d %q", r.status, r.body)
	}
}

func queryEscape(s string) string { return url.QueryEscape(s) }
