package caddypush

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the subscribers that follow their channels with a
// registered subscription (pushstore.Store.Follow): every stream, a
// long-poll or interval-poll on several channels, and a long-poll of a
// location with longpoll_multipart_response, which takes every message
// waiting for it.

// serveFollow answers a subscriber of transport t: a stream, or a poll of
// a multiplexed location.
func (s *Subscriber) serveFollow(w http.ResponseWriter, r *http.Request, t transport) error {
	var keys []string
	if s.multiplexed() {
		var ok bool
		if keys, ok = s.channelKeys(w, r); !ok {
			return nil
		}
	} else {
		_, key, ok := s.channelKey(w, r)
		if !ok {
			return nil
		}
		keys = []string{key}
	}
	cursors, err := streamCursor(r, len(keys))
	if err != nil {
		writeText(w, http.StatusBadRequest, badIDText)
		return nil
	}
	if t == tWebSocket && s.Publish != nil && s.wsPublish && lineBreakIn(r.Header) {
		writeText(w, http.StatusBadRequest, lineBreakText) // what its frames would publish
		return nil
	}
	if t == tWebSocket && !s.wsHandshakeOK(r) {
		// Refused before it subscribes, so it displaces no one and takes
		// no message; the upgrader answers why.
		_, _ = s.wsUpgrader.Upgrade(hijacker{w}, r, nil)
		return nil
	}
	if t == tLongPoll || t == tIntervalPoll {
		logTransport(r, t)
		return s.pollFollowing(w, r, keys, t, cursors)
	}
	st := newStall()
	sub, err := s.store.Follow(keys, s.followRequest(t, cursors, st.behind))
	if err != nil {
		return storeRefusal(w, err)
	}
	logTransport(r, t)
	streams[t].Add(1)
	opened := time.Now()
	ended := func() { // once the stream is over, in whichever goroutine ran it
		st.finish()
		s.streamEnded(t, opened)
	}
	// A stream's compound ids go on from the one it resumed from: the
	// channels it had no message of keep their cursors' tags.
	ids := streamIDs(cursors, len(keys))
	if t == tWebSocket {
		s.serveWebSocket(w, r, keys, sub, ids, st, ended)
		return nil
	}
	// The head's flush may block (an HTTP/2 client that grants no
	// window): a stream that falls behind meanwhile is cut there too.
	st.open(deadlineCut(w))
	sw, hs, ping := s.openHTTPStream(t, w, r)
	if hs.direct == nil {
		s.pumpHTTP(sw, hs, sub, ids, ping, st, ended)
		return nil
	}
	// A direct stream goes on in a goroutine of its own, and the handler
	// returns: the request's memory and the handler's deep stack are not
	// kept for as long as the stream lasts.
	go s.pumpHTTP(sw, hs, sub, ids, ping, st, func() {
		ended()
		hijacked.Done()
	})
	return nil
}

// followRequest is the subscription a subscriber of transport t with
// cursors asks the store for (onBehind: a stream's). A long-poll takes one
// message, unless longpoll_multipart_response lets it take all it finds.
func (s *Subscriber) followRequest(t transport, cursors []pushstore.MessageID, onBehind func()) pushstore.FollowRequest {
	return pushstore.FollowRequest{
		Cursors:     cursors,
		HasCursor:   cursors != nil,
		Start:       s.start,
		Create:      !s.AuthorizedChannelsOnly,
		OneShot:     t == tLongPoll && s.lpMultipart == lpOne,
		NoWait:      t == tIntervalPoll,
		QueueBytes:  s.StreamQueueSize,
		Concurrency: s.concurrency,
		MaxWaiters:  s.MaxChannelSubscribers,
		OnBehind:    onBehind,
	}
}

// pollFollowing answers a poll of transport t through a followed
// subscription: a poll of a multiplexed location, or a long-poll of one
// with longpoll_multipart_response.
func (s *Subscriber) pollFollowing(w http.ResponseWriter, r *http.Request, keys []string, t transport,
	cursors []pushstore.MessageID) error {
	sub, err := s.store.Follow(keys, s.followRequest(t, cursors, nil))
	if err != nil {
		return storeRefusal(w, err)
	}
	streams[t].Add(1)
	defer streams[t].Add(-1)
	s.pollMany(w, r, sub, cursors, len(keys), t == tLongPoll && s.lpMultipart != lpOne)
	return nil
}

// streamEnded counts a stream of transport t, opened at opened, out and
// logs its end at debug level: the access log line of a stream on a
// hijacked connection is written when it opens.
func (s *Subscriber) streamEnded(t transport, opened time.Time) {
	streams[t].Add(-1)
	if c := s.logger.Check(zapcore.DebugLevel, "stream ended"); c != nil {
		c.Write(zap.String("transport", t.String()), zap.Duration("duration", time.Since(opened)))
	}
}

// openHTTPStream writes the head of an HTTP stream of transport t, and
// returns its writer, where it writes, and its ping interval.
func (s *Subscriber) openHTTPStream(t transport, w http.ResponseWriter, r *http.Request) (streamWriter, httpStream, time.Duration) {
	switch t {
	case tEventSource:
		sw := s.openEventSource(w, r)
		return sw, sw.httpStream, time.Duration(s.EventSourcePingInterval)
	case tMultipart:
		mw := s.openMultipart(w, r)
		return mw, mw.httpStream, 0
	case tChunked:
		cw := s.openChunked(w, r)
		return cw, cw.httpStream, 0
	}
	rw := s.openRaw(w, r)
	return rw, rw.httpStream, 0
}

// pollMany answers a long-poll or interval-poll on several channels: the
// first message after its cursors, with the compound id as
// Last-Modified (the time) and Etag (the tag list, `0,[1],-`). A long-poll
// with nothing to send waits as a one-channel one does; an interval-poll
// (sub nil) answers 304 echoing its cursor. With all (a long-poll of a
// longpoll_multipart_response location, on one channel or several), it
// answers every message its subscription was sent by the time it is
// answered.
func (s *Subscriber) pollMany(w http.ResponseWriter, r *http.Request, sub pushstore.Subscription,
	cursors []pushstore.MessageID, channels int, all bool) {
	if sub == nil {
		h := w.Header()
		if v := r.Header.Get("If-Modified-Since"); v != "" {
			h.Set("Last-Modified", v)
		}
		if v := r.Header.Get("If-None-Match"); v != "" {
			h.Set("Etag", v)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	defer sub.Cancel()
	var timeout <-chan time.Time
	if s.Timeout > 0 {
		t := time.NewTimer(time.Duration(s.Timeout))
		defer t.Stop()
		timeout = t.C
	}
	conn := watchConn(r)
	defer unwatch(conn)
	select {
	case <-sub.Ready():
	case <-timeout:
		sub.Cancel()
	case <-r.Context().Done():
		return
	case <-conn.Gone():
		return
	}
	var buf [1]pushstore.Delivery
	if all {
		// What was queued before the cancel is taken, and counted as
		// received: all of it is sent.
		sub.Cancel()
		ds, end := sub.Take(nil)
		s.answerAll(w, r, ds, end, cursors, channels)
		return
	}
	ds, end := sub.Take(buf[:0])
	if len(ds) == 0 {
		writePollEnd(w, end)
		return
	}
	ids := runningFrom(cursors, channels)
	ids.advance(ds[0].Channel, ds[0].Message.ID)
	s.writeCompound(w, r, ds[0].Message, ids)
}

// runningFrom is a subscriber's compound id as its request's cursors give
// it: the time they share and the tags of the channels that have one in
// that second.
func runningFrom(cursors []pushstore.MessageID, channels int) *runningID {
	ids := newRunningID(channels)
	ids.active = -1
	for _, c := range cursors {
		ids.time = max(ids.time, c.Time)
	}
	for i, c := range cursors {
		if c.Time == ids.time && c.Tag < 1<<40 {
			ids.tags[i] = c.Tag
		}
	}
	return ids
}

// writeCompound sends one message of a multiplexed poll.
func (s *Subscriber) writeCompound(w http.ResponseWriter, r *http.Request, m *pushstore.Message, ids *runningID) {
	lm, etag := ids.header()
	s.writePoll(w, r, m.ContentType, lm, etag, len(m.Body))
	_, _ = w.Write(m.Body)
}

// streamIDs is a stream's compound id at its start, its cursors' (nil
// for one channel).
func streamIDs(cursors []pushstore.MessageID, channels int) *runningID {
	if channels < 2 {
		return nil
	}
	return runningFrom(cursors, channels)
}

// answerAll answers a long-poll of a longpoll_multipart_response location
// with ds, what its subscription was sent (end: how it ended, when ds is
// empty): one message as any long-poll's answer, several as one body.
func (s *Subscriber) answerAll(w http.ResponseWriter, r *http.Request, ds []pushstore.Delivery, end pushstore.End,
	cursors []pushstore.MessageID, channels int) {
	switch {
	case len(ds) == 0:
		writePollEnd(w, end)
		return
	case len(ds) == 1 && channels == 1:
		s.writeMessage(w, r, ds[0].Message)
		return
	}
	var lm, etag string
	if channels == 1 {
		last := wireOf(ds[len(ds)-1].Message)
		lm, etag = last.lastModified, last.etag
		setMessageID(r, ds[len(ds)-1].Message)
	} else {
		ids := runningFrom(cursors, channels)
		for _, d := range ds {
			ids.advance(d.Channel, d.Message.ID)
		}
		if len(ds) == 1 {
			s.writeCompound(w, r, ds[0].Message, ids)
			return
		}
		lm, etag = ids.header()
	}
	parts := pollParts{ds: ds}
	ct := ""
	if s.lpMultipart == lpMultipart {
		b := newBoundary()
		parts.boundary = b[:]
		ct = "multipart/mixed; boundary=" + string(b[:])
	}
	s.writePoll(w, r, ct, lm, etag, parts.size())
	_ = parts.writeTo(w)
}

// writePoll writes the head of a poll's answer through a followed
// subscription: ct its Content-Type (none when empty), lm and etag the id
// the next poll resumes from, n the body's length.
func (s *Subscriber) writePoll(w http.ResponseWriter, r *http.Request, ct, lm, etag string, n int) {
	h := w.Header()
	if ct != "" {
		h.Set("Content-Type", ct)
	} else {
		h["Content-Type"] = nil // no Content-Type, and no sniffing either
	}
	h.Set("Last-Modified", lm)
	h.Set("Etag", etag)
	h.Set("Vary", "If-None-Match, If-Modified-Since")
	s.setCORS(h, r)
	h.Set("Access-Control-Expose-Headers", "Last-Modified, Etag")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", itoa(n))
	w.WriteHeader(http.StatusOK)
}

// pollParts is the body of a longpoll_multipart_response answer of several
// messages, as nchan writes it: with a boundary, a multipart/mixed part
// per message, its Content-Type the part's only header (none when it has
// none), then the closing boundary; without (raw), each body followed by
// a newline.
type pollParts struct {
	ds       []pushstore.Delivery
	boundary []byte
}

// Writing an answer: the parts' headers and small bodies are gathered in a
// buffer of about partsBuffer bytes; a body of bigBody bytes or more is
// written as it is, so the stored messages are not copied into one buffer
// per answer.
const (
	partsBuffer = 32 << 10
	bigBody     = 4 << 10
)

func (p pollParts) size() int {
	n := 0
	for _, d := range p.ds {
		n += len(d.Message.Body) + 1
		if p.boundary != nil {
			n += len("--\r\n\r\n\r") + len(p.boundary)
			if ct := d.Message.ContentType; ct != "" {
				n += len("Content-Type: \r\n") + len(ct)
			}
		}
	}
	if p.boundary != nil {
		n += len("----\r\n") + len(p.boundary)
	}
	return n
}

func (p pollParts) writeTo(w io.Writer) error {
	buf := make([]byte, 0, partsBuffer+bigBody)
	for _, d := range p.ds {
		if p.boundary != nil {
			buf = append(append(append(buf, "--"...), p.boundary...), "\r\n"...)
			if ct := d.Message.ContentType; ct != "" {
				buf = append(append(append(buf, "Content-Type: "...), ct...), "\r\n"...)
			}
			buf = append(buf, "\r\n"...)
		}
		if body := d.Message.Body; len(body) >= bigBody {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
			if _, err := w.Write(body); err != nil {
				return err
			}
		} else {
			buf = append(buf, body...)
		}
		if p.boundary != nil {
			buf = append(buf, "\r\n"...)
		} else {
			buf = append(buf, '\n')
		}
		if len(buf) >= partsBuffer {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if p.boundary != nil {
		buf = append(append(append(buf, "--"...), p.boundary...), "--\r\n"...)
	}
	_, err := w.Write(buf)
	return err
}

// lpMode is how a long-poll answers several waiting messages
// (longpoll_multipart_response).
type lpMode uint8

const (
	lpOne       lpMode = iota // off: one message per poll
	lpMultipart               // on: multipart/mixed
	lpRaw                     // raw: bodies and newlines
)

func parseLongPollMultipart(v string) (lpMode, error) {
	switch v {
	case "", "off":
		return lpOne, nil
	case "on":
		return lpMultipart, nil
	case "raw":
		return lpRaw, nil
	}
	return lpOne, fmt.Errorf("unknown longpoll_multipart_response %q (want on, off or raw)", v)
}
