package caddypush

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestEventSourceEventName: eventsource_event (nchan_eventsource_event),
// as nginx+nchan 1.3.6 answers it. On a publisher it names every message
// published there, over POST or a WebSocket, in place of the request's
// X-EventSource-Event; on a subscriber it is the event name of every
// message its EventSource streams are sent, stored or live, with the
// messages' own ids; a placeholder that comes out empty, or holds a line
// break, leaves the messages' own names.
func TestEventSourceEventName(t *testing.T) { forEachStore(t, testEventSourceEventName) }

func testEventSourceEventName(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	post := func(path, body, event string) {
		t.Helper()
		if r := do(t, h1Client, "POST", base+path+"?id="+ch, strings.NewReader(body), "X-EventSource-Event", event); r.status != 201 && r.status != 202 {
			t.Fatalf("publish: %d", r.status)
		}
	}
	post("/p/ev", "one", "")
	post("/p/ev", "two", "hdr")
	post("/pub", "three", "hdr")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := openWS(t, base+"/p/ev?id="+ch, nil)
	if err := pub.Write(ctx, websocket.MessageText, []byte("four")); err != nil {
		t.Fatal(err)
	}
	wsRead(t, pub) // its channel info

	read := func(s *sseStream, n int) (got []string, ids []string) {
		t.Helper()
		for range n {
			ev := s.message(t)
			got, ids = append(got, ev.event+"="+ev.data), append(ids, ev.id)
		}
		return got, ids
	}
	plain := openSSE(t, h1Client, base+"/sub?id="+ch)
	got, ids := read(plain, 4)
	if want := "[pubev=one pubev=two hdr=three pubev=four]"; fmt.Sprint(got) != want {
		t.Fatalf("named by the publisher: %v, want %s", got, want)
	}
	// ?ev= missing (empty), or holding a line break that would forge lines
	// of the event (the placeholder is decoded): the messages' own names.
	forged := openSSE(t, h1Client, base+"/s/ev?ev=x%0Adata:%20forged%0A%0Aevent:%20y&id="+ch)
	if got, _ := read(forged, 4); fmt.Sprint(got) != "[pubev=one pubev=two hdr=three pubev=four]" {
		t.Fatalf("a name with a line break: %v", got)
	}
	forged.close()
	own := openSSE(t, h1Client, base+"/s/ev?id="+ch)
	if got, _ := read(own, 4); fmt.Sprint(got) != "[pubev=one pubev=two hdr=three pubev=four]" {
		t.Fatalf("an empty override: %v", got)
	}
	named := openSSE(t, h1Client, base+"/s/ev?ev=subev&id="+ch)
	got, namedIDs := read(named, 4)
	if fmt.Sprint(got) != "[subev=one subev=two subev=three subev=four]" || fmt.Sprint(namedIDs) != fmt.Sprint(ids) {
		t.Fatalf("named by the subscriber: %v with ids %v, want subev for each, ids %v", got, namedIDs, ids)
	}
	// Live, to a stream that waits (a parked one is written by the
	// publisher): the subscriber's name still.
	waitFor(t, "the streams waiting", func() bool { return waiters(t, "/"+ch) == 3 })
	post("/pub", "five", "hdr")
	for _, c := range []struct {
		s    *sseStream
		want string
	}{{plain, "hdr=five"}, {own, "hdr=five"}, {named, "subev=five"}} {
		if got, _ := read(c.s, 1); got[0] != c.want {
			t.Fatalf("live: %s, want %s", got[0], c.want)
		}
	}
	// A publisher's name with a line break is not used: the header's.
	if r := do(t, h1Client, "POST", base+"/p/evq?ev=x%0Adata:%20forged&id="+ch, strings.NewReader("six"),
		"X-EventSource-Event", "hdr2"); r.status != 201 {
		t.Fatalf("publish: %d", r.status)
	}
	if got, _ := read(plain, 1); got[0] != "hdr2=six" {
		t.Fatalf("a publisher's name with a line break: %s", got[0])
	}
}
