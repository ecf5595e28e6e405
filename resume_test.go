package caddypush

import (
	"net/url"
	"strings"
	"testing"
)

// This file holds tests of where a stream resumes from, as nchan 1.3.6
// reads it (a review against nchan's wire, 2026-11-29).

// firstEventIDs opens an EventSource on path and returns the ids of its
// first n events.
func firstEventIDs(t *testing.T, path string, n int) []string {
	t.Helper()
	c := rawStream(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
	if h := c.head(); !strings.HasPrefix(h, "HTTP/1.1 200") {
		t.Fatalf("GET %s: %q", path, h)
	}
	c.until(t, "retry: 3000\n\n")
	var ids []string
	for range n {
		ev := c.until(t, "\n\n")
		for _, line := range strings.Split(ev, "\n") {
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				ids = append(ids, id)
			}
		}
	}
	c.conn.Close()
	return ids
}

// firstEventData opens an EventSource with extra request headers and
// returns its status line and the data of its first event.
func firstEventData(t *testing.T, path, hdr string) (status, data string) {
	t.Helper()
	c := rawStream(t, "GET "+path+" HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"+hdr+"\r\n")
	h := c.head()
	status, _, _ = strings.Cut(h, "\r\n")
	if !strings.HasPrefix(h, "HTTP/1.1 200") {
		return status, ""
	}
	c.until(t, "retry: 3000\n\n")
	for _, line := range strings.Split(c.until(t, "\n\n"), "\n") {
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			return status, d
		}
	}
	return status, ""
}

// TestRepeatedLastEventIDArgument: a request with the last_event_id argument twice (NchanSubscriber appends
// its own `&last_event_id=` to a URL that already holds one, at its first
// reconnect): nchan reads the first ($arg_last_event_id). caddy-push joined
// the values with a comma, so on a multiplexed location the id has too
// many tags and gets 400 Message ID invalid: an EventSource that gets it is
// closed for good, a WebSocket client retries into the same 400 forever.
func TestRepeatedLastEventIDArgument(t *testing.T) {
	startMain(t)
	a, b := chanName(t, "a"), chanName(t, "b")
	publish(t, "/pub", a, "a1")
	publish(t, "/pub", a, "a2")
	ids := firstEventIDs(t, "/s/split?ids="+a+","+b, 2)
	q := "&last_event_id=" + url.QueryEscape(ids[0]) + "&last_event_id=" + url.QueryEscape(ids[1])
	status, data := firstEventData(t, "/s/split?ids="+a+","+b+q, "")
	if status != "HTTP/1.1 200 OK" || data != "a2" {
		t.Fatalf("resuming with last_event_id %q then %q: %s, first data %q; want 200 and a2 (nchan reads the first)",
			ids[0], ids[1], status, data)
	}
}

// TestLastEventIDHeaderURLDecoded: Last-Event-ID is URL-decoded by nchan (nchan_subscriber_get_msg_id reads
// $http_last_event_id through nchan_urldecode_str, as it does the query
// argument): `T%3A0` resumes after T:0. caddy-push read the header raw, found
// no `:`, and started at first_message: the client is sent again what it had.
func TestLastEventIDHeaderURLDecoded(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	publish(t, "/pub", ch, "m1")
	publish(t, "/pub", ch, "m2")
	id := firstEventIDs(t, "/sub?id="+ch, 1)[0]
	status, data := firstEventData(t, "/sub?id="+ch, "Last-Event-ID: "+url.QueryEscape(id)+"\r\n")
	if status != "HTTP/1.1 200 OK" || data != "m2" {
		t.Fatalf("Last-Event-ID %q: %s, first data %q; want m2 (nchan decodes it)", url.QueryEscape(id), status, data)
	}
}
