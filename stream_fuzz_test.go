package caddypush

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/caddypush/caddy-push/pushstore"
)

// FuzzParseID reads any id for 1 to 255 channels: it may refuse or find
// no id, never panic, and what it accepts has one cursor per channel,
// which formats back into an id it accepts again.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1795803532:0", "1795803532:[0],-,-", "1795803533:-,0,[1]", "T:1", ":0",
		"1:[0],[1]", "1:0,0,0", "1:[x],y", "1:[0", "1:-1,[2]", "99999999999999999999:1"} {
		f.Add(s, uint8(3))
	}
	f.Fuzz(func(t *testing.T, id string, n uint8) {
		channels := int(n)%255 + 1
		cursors, err := parseID(id, channels)
		if err != nil || cursors == nil { // refused, or no id
			return
		}
		if len(cursors) != channels {
			t.Fatalf("parseID(%q, %d) gave %d cursors", id, channels, len(cursors))
		}
		ids := runningFrom(cursors, channels)
		ids.active = 0
		if _, err := parseID(string(ids.appendID(nil)), channels); err != nil {
			t.Fatalf("%q formats to %q, which does not parse: %v", id, ids.appendID(nil), err)
		}
	})
}

// sseLineEnd matches the line ends of text/event-stream.
var sseLineEnd = regexp.MustCompile("\r\n|\r|\n")

// FuzzEventSourceData frames any body as an EventSource event and reads it
// back as a browser does (lines split at CRLF, CR or LF; data lines joined
// with LF): the body comes back with its line ends turned into LF.
func FuzzEventSourceData(f *testing.F) {
	for _, s := range []string{"", "a", "line1\nline2", "crlf\r\nx", "lone\rcr", "trail\n", "\n\n", "data: x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev := string(appendData(nil, body))
		if !strings.HasSuffix(ev, "\n\n") {
			t.Fatalf("event %q does not end with a blank line", ev)
		}
		var data []string
		for _, line := range sseLineEnd.Split(strings.TrimSuffix(ev, "\n\n"), -1) {
			v, ok := strings.CutPrefix(line, "data: ")
			if !ok {
				t.Fatalf("line %q of %q is not a data line", line, ev)
			}
			data = append(data, v)
		}
		if got, want := strings.Join(data, "\n"), sseLineEnd.ReplaceAllString(string(body), "\n"); got != want {
			t.Fatalf("body %q came back as %q", body, got)
		}
	})
}

// metaHeader is how NchanSubscriber.js reads a ws+meta.nchan frame.
var metaHeader = regexp.MustCompile(`^id: (.*)\n(content-type: (.*)\n)?\n`)

// FuzzWebSocketPublish publishes any frame a client may send on a pub/sub
// location and frames the message it makes as the subscribers get it: a
// binary frame is application/octet-stream, a text frame takes the
// handshake's Content-Type; the frame goes out binary unless it is valid
// UTF-8 text; and nchan's client reads the ws+meta.nchan header and the
// body back intact.
func FuzzWebSocketPublish(f *testing.F) {
	f.Add(true, []byte("hello"), "text/plain")
	f.Add(false, []byte{0, 1, 2}, "")
	f.Add(true, []byte("\xff\xfe"), "image/x-test")
	f.Add(true, []byte("id: 1:0\n\nfake"), "")
	f.Fuzz(func(t *testing.T, text bool, payload []byte, ct string) {
		if strings.ContainsAny(ct, "\r\n") || !utf8.ValidString(ct) {
			return // not a header value a handshake can carry
		}
		op := websocket.BinaryMessage
		if text {
			op = websocket.TextMessage
		}
		m := typingOf(http.Header{"Content-Type": {ct}}).message(op, payload)
		switch {
		case !text && m.ContentType != "application/octet-stream":
			t.Fatalf("binary frame published as %q", m.ContentType)
		case text && m.ContentType != ct:
			t.Fatalf("text frame published as %q, the handshake said %q", m.ContentType, ct)
		}
		if frameType(m) == websocket.TextMessage && !utf8.Valid(m.Body) {
			t.Fatalf("%q would go out as a text frame", m.Body)
		}
		m.ID = pushstore.MessageID{Time: 1795803532, Tag: 7}
		frame := appendMeta(nil, m, []byte(m.ID.String()))
		got := metaHeader.FindSubmatch(frame)
		if got == nil || string(got[1]) != "1795803532:7" || string(got[3]) != m.ContentType ||
			string(frame[len(got[0]):]) != string(m.Body) {
			t.Fatalf("frame %q read back as %q", frame, got)
		}
	})
}
