package caddypush

import (
	"bytes"
	"cmp"
	"net/http"
	"strconv"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the EventSource transport (text/event-stream), framed as
// nchan frames it: `: hi` when the stream opens, then per message an
// optional `event:` line (the publisher's X-EventSource-Event), `id:` and
// one `data:` line per line of the body.

// eventSourceRetry is the reconnection delay the stream announces, in ms.
// nchan announces none, which leaves it to each browser (about 3 s in
// Chromium); announcing one makes every browser wait the same.
const eventSourceRetry = 3000

// The memo slots of a message's EventSource forms.
var (
	sseEventSlot = pushstore.NewMemoSlot() // *sseFrames: the whole event, with the message's own id
	sseDataSlot  = pushstore.NewMemoSlot() // the data lines and the blank line
)

// sseFrames is a message's whole event, alone and as one HTTP/1.1 chunk
// (the size line, the event, CRLF), in one buffer: a parked direct stream
// writes the chunk itself, without copying it.
type sseFrames struct {
	chunk []byte
	event []byte // within chunk
}

// framesOf returns m's sseFrames, memoized.
func framesOf(m *pushstore.Message) *sseFrames {
	return m.Memo(sseEventSlot, func(m *pushstore.Message) any {
		ev := appendEvent(nil, m, []byte(m.ID.String()))
		b := make([]byte, 0, chunkRoom+len(ev)+2)
		b = append(strconv.AppendInt(b, int64(len(ev)), 16), '\r', '\n')
		head := len(b)
		b = append(append(b, ev...), '\r', '\n')
		end := head + len(ev)
		return &sseFrames{chunk: b, event: b[head:end:end]} // an append to event cannot reach the CRLF
	}).(*sseFrames)
}

type sseWriter struct {
	httpStream
	scratch   []byte
	event     string // eventsource_event: every message's event name instead of its own
	pingFrame []byte // the location's keep-alive (eventSourcePing)
}

// openEventSource writes the stream's head and first bytes.
func (s *Subscriber) openEventSource(w http.ResponseWriter, r *http.Request) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // an nginx in front must not hold events back
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(": hi\nretry: " + strconv.Itoa(eventSourceRetry) + "\n\n"))
	sw := &sseWriter{httpStream: startHTTPStream(w, r), pingFrame: s.esPing}
	if s.EventSourceEvent != "" {
		sw.event = eventName(replaceAll(r, s.EventSourceEvent))
	}
	return sw
}

// message writes m: its memoized event, or, with a compound id or an
// event name of the location's, an event made for this stream.
func (sw *sseWriter) message(m *pushstore.Message, ids *runningID) error {
	if ids == nil && sw.event == "" {
		_, err := sw.w.Write(framesOf(m).event)
		return err
	}
	b := sw.scratch[:0]
	if ev := cmp.Or(sw.event, m.Event); ev != "" {
		b = append(append(append(b, "event: "...), ev...), '\n')
	}
	if ids == nil {
		b = append(append(b, "id: "...), m.ID.String()...)
	} else {
		b = ids.appendID(append(b, "id: "...))
	}
	b = append(b, '\n')
	b = append(b, m.Memo(sseDataSlot, func(m *pushstore.Message) any { return appendData(nil, m.Body) }).([]byte)...)
	sw.scratch = b
	_, err := sw.w.Write(b)
	return err
}

// appendEvent appends m as one event with id.
func appendEvent(b []byte, m *pushstore.Message, id []byte) []byte {
	if m.Event != "" {
		b = append(append(append(b, "event: "...), m.Event...), '\n')
	}
	b = append(append(append(b, "id: "...), id...), '\n')
	return appendData(b, m.Body)
}

// appendData appends a body as data lines and the blank line that ends the
// event. A body's lines may end with LF, CRLF or CR (the three line ends of
// text/event-stream): each becomes a data line, so a client reads the body
// back with LF line ends. A lone CR is a line end here, where nchan sends it
// as it is and the client cuts the line there and drops the rest of it.
func appendData(b, body []byte) []byte {
	for {
		i := bytes.IndexAny(body, "\r\n")
		if i < 0 {
			b = append(append(append(b, "data: "...), body...), '\n')
			return append(b, '\n')
		}
		b = append(append(append(b, "data: "...), body[:i]...), '\n')
		if body[i] == '\r' && i+1 < len(body) && body[i+1] == '\n' {
			i++
		}
		body = body[i+1:]
	}
}

// sendNow writes m's memoized chunk to a parked direct stream, unless
// something waits to be written before it.
func (sw *sseWriter) sendNow(m *pushstore.Message) bool {
	if d := sw.direct; sw.event == "" && len(d.out) <= chunkRoom && len(d.pending) == 0 {
		return d.writeNow(framesOf(m).chunk)
	}
	return sendBatched(sw, m)
}

func (sw *sseWriter) ping() error {
	_, err := sw.w.Write(sw.pingFrame)
	return err
}

// esPingLine is one line of an EventSource keep-alive: the setting that
// holds it, what the line starts with, and its text.
type esPingLine struct{ name, prefix, text string }

// esPingLines are the lines of the location's EventSource keep-alive, in
// the order they are sent (nchan's): the comment, the event and the data.
// An empty one is not sent.
func (s *Subscriber) esPingLines() [3]esPingLine {
	event := "ping" // nchan's default: no data, so no event reaches the page
	if s.EventSourcePingEvent != nil {
		event = *s.EventSourcePingEvent
	}
	return [3]esPingLine{
		{"eventsource_ping_comment", ":", s.EventSourcePingComment},
		{"eventsource_ping_event", "event: ", event},
		{"eventsource_ping_data", "data: ", s.EventSourcePingData},
	}
}

// eventSourcePing is the keep-alive an EventSource stream is sent every
// eventsource_ping_interval: its lines and the blank line that ends it, or,
// when they are all empty, an empty comment.
func (s *Subscriber) eventSourcePing() []byte {
	var b []byte
	for _, l := range s.esPingLines() {
		if l.text != "" {
			b = append(append(append(b, l.prefix...), l.text...), '\n')
		}
	}
	if b == nil {
		return []byte(":\n\n")
	}
	return append(b, '\n')
}

func (sw *sseWriter) end(why streamEnd) error {
	sw.boundEnd()
	_, err := sw.w.Write([]byte(":" + itoa(why.status) + ": " + why.line() + "\n\n"))
	return err
}
