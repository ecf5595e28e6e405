package main

import (
	"bufio"
	"strings"
	"testing"
)

// The event-stream parser on what nchan and Centrifugo write: ids, multi-line
// data, comments and nchan's ping events, CRLF and LF endings, an event
// without data, and a line longer than the reader's buffer.
func TestSSEParser(t *testing.T) {
	long := strings.Repeat("y", 5000)
	in := ": hi\r\n\r\n" +
		"id: 1764265000:0\r\ndata: pushbench seq=1 t=5 x\r\n\r\n" +
		"event: ping\ndata: \n\n" +
		"data: a\ndata:b\n\n" +
		"id: 1764265000:1\nevent: message\n\n" +
		"data: " + long + "\n\n" +
		"data: {\"connect\":{}}\n\n"
	var p sseParser
	var got []sseEvent
	err := readSSE(bufio.NewReaderSize(strings.NewReader(in), 64), &p, func(e sseEvent) { got = append(got, e) })
	if err == nil || err.Error() != "EOF" {
		t.Fatalf("err %v", err)
	}
	want := []struct{ id, event, data string }{
		{"1764265000:0", "", "pushbench seq=1 t=5 x"},
		{"1764265000:0", "ping", ""},
		{"1764265000:0", "", "a\nb"},
		{"1764265000:1", "", long},
		{"1764265000:1", "", `{"connect":{}}`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events: %+v", len(got), got)
	}
	for i, w := range want {
		if got[i].id != w.id || got[i].event != w.event || string(got[i].data) != w.data {
			t.Errorf("event %d: got %q %q %.40q, want %q %q %.40q", i, got[i].id, got[i].event, got[i].data, w.id, w.event, w.data)
		}
	}
	if !got[1].keepAlive() || got[0].keepAlive() {
		t.Error("keepAlive")
	}
	if p.comments != 1 || p.lastID != "1764265000:1" {
		t.Errorf("comments %d, lastID %q", p.comments, p.lastID)
	}
}

func TestParseBody(t *testing.T) {
	b := makeBody(42, 123456789, 100)
	if len(b) != 100 {
		t.Fatalf("size %d", len(b))
	}
	if seq, ts, ok := parseBody(b); !ok || seq != 42 || ts != 123456789 {
		t.Fatalf("%d %d %v", seq, ts, ok)
	}
	for _, bad := range []string{"", "pushbench seq=", "pushbench seq=1", "pushbench seq=1 t=", "pushbench seq=x t=1", "pushbench seq=1 t=2x", "other"} {
		if _, _, ok := parseBody([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if seq, ts, ok := parseBody([]byte("pushbench seq=7 t=99")); !ok || seq != 7 || ts != 99 {
		t.Error("no padding")
	}
}
