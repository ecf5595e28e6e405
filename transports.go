package caddypush

import (
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// This file holds the subscriber transports: their names, and which one a
// request asks for.

// transport is a way a subscriber is sent messages.
type transport uint8

// The transports, as nchan has them.
const (
	tLongPoll     transport = iota // one message per request, waiting for it
	tIntervalPoll                  // one message per request, never waiting
	tEventSource                   // text/event-stream
	tWebSocket                     // RFC 6455, with nchan's ws+meta.nchan subprotocol
	tMultipart                     // multipart/mixed, a part per message
	tChunked                       // one HTTP/1.1 chunk per message
	tRawStream                     // bodies with a separator
	numTransports
)

// transportNames are the canonical names, as the Caddyfile and JSON take
// them and the logs and metrics show them.
var transportNames = [numTransports]string{
	tLongPoll: "long-poll", tIntervalPoll: "interval-poll", tEventSource: "eventsource",
	tWebSocket: "websocket", tMultipart: "multipart-mixed", tChunked: "chunked", tRawStream: "http-raw-stream",
}

func (t transport) String() string { return transportNames[t] }

// transportAliases maps every name nchan accepts to ours.
var transportAliases = map[string]transport{
	"long-poll": tLongPoll, "longpoll": tLongPoll,
	"interval-poll": tIntervalPoll, "intervalpoll": tIntervalPoll, "poll": tIntervalPoll,
	"eventsource": tEventSource, "event-source": tEventSource, "es": tEventSource, "sse": tEventSource,
	"websocket": tWebSocket, "websockets": tWebSocket, "ws": tWebSocket,
	"multipart-mixed": tMultipart, "multipart": tMultipart, "multipart/mixed": tMultipart, "http-multipart": tMultipart,
	"chunked": tChunked, "http-chunked": tChunked,
	"http-raw-stream": tRawStream,
}

// defaultTransports are what a location without a list serves: every
// transport but interval-poll and the raw stream, as nchan's default.
var defaultTransports = []transport{tLongPoll, tEventSource, tWebSocket, tMultipart, tChunked}

// transportSet is the transports a location serves.
type transportSet uint16

func (s transportSet) has(t transport) bool { return s&(1<<t) != 0 }

func (s transportSet) names() string {
	var names []string
	for t := range numTransports {
		if s.has(t) {
			names = append(names, t.String())
		}
	}
	return strings.Join(names, " ")
}

// requested returns the transport a request asks for, in nchan's order: a
// WebSocket upgrade; Accept holding text/event-stream; TE chunked (HTTP/1.1
// only: HTTP/1.0 has no chunked encoding); Accept holding multipart/mixed; then, for a plain GET, the raw
// stream, long-poll or interval-poll, whichever the location serves (in
// that order).
func (s transportSet) requested(r *http.Request) transport {
	accept := acceptOf(r)
	switch {
	case isWebSocketUpgrade(r):
		return tWebSocket
	case strings.Contains(accept, "text/event-stream"):
		return tEventSource
	case r.ProtoMajor == 1 && r.ProtoMinor >= 1 && wantsChunked(headerList(r.Header, "Te")):
		return tChunked
	case strings.Contains(accept, "multipart/mixed"):
		return tMultipart
	case s.has(tRawStream):
		return tRawStream
	case s.has(tLongPoll) || !s.has(tIntervalPoll):
		return tLongPoll
	}
	return tIntervalPoll
}

// isWebSocketUpgrade reports whether r opens a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(headerList(r.Header, "Upgrade"), "websocket") &&
		headerHasToken(headerList(r.Header, "Connection"), "upgrade")
}

// wantsChunked reports whether a TE header asks for chunked with a
// non-zero q (nchan also wants it last in the list; we do not).
func wantsChunked(te string) bool {
	for part := range strings.SplitSeq(te, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "chunked") {
			continue
		}
		q := strings.TrimSpace(params)
		return q == "" || !strings.HasPrefix(q, "q=0") || strings.Trim(q[3:], ".0") != ""
	}
	return false
}

func headerHasToken(v, token string) bool {
	for part := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(part), token) {
			return true
		}
	}
	return false
}

// refuseTransport answers a request for a transport the location does not
// serve. nchan serves it with the next transport it allows, or answers
// 403 without a reason; a client that asked for a stream and is answered a
// long-poll is worse off than one told why.
func refuseTransport(w http.ResponseWriter, asked transport, allowed transportSet) {
	writeText(w, http.StatusNotAcceptable, "This location does not serve "+asked.String()+
		" subscribers; it serves: "+allowed.names()+".")
}

// logTransport adds the transport to the request's access log entry.
func logTransport(r *http.Request, t transport) {
	if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
		extra.Add(zap.String("push_transport", t.String()))
	}
}
