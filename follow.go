package caddypush

import (
	"net/http"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the subscribers that follow their channels with a
// registered subscription (pushstore.Store.Follow): every stream, and a
// long-poll or interval-poll on several channels.

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
	if t == tWebSocket && !s.wsHandshakeOK(r) {
		// Refused before it subscribes, so it displaces no one and takes
		// no message; the upgrader answers why.
		_, _ = s.wsUpgrader.Upgrade(hijacker{w}, r, nil)
		return nil
	}
	req := pushstore.FollowRequest{
		Cursors:     cursors,
		HasCursor:   cursors != nil,
		Start:       s.start,
		Create:      !s.AuthorizedChannelsOnly,
		OneShot:     t == tLongPoll,
		NoWait:      t == tIntervalPoll,
		QueueBytes:  s.StreamQueueSize,
		Concurrency: s.concurrency,
		MaxWaiters:  s.MaxChannelSubscribers,
	}
	var st *stall
	if t != tLongPoll && t != tIntervalPoll {
		st = newStall()
		req.OnBehind = st.behind
	}
	sub, err := s.store.Follow(keys, req)
	if err != nil {
		return storeRefusal(w, err)
	}
	logTransport(r, t)
	streams[t].Add(1)
	if t == tLongPoll || t == tIntervalPoll {
		defer streams[t].Add(-1)
		s.pollMany(w, r, sub, cursors, len(keys))
		return nil
	}
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
// (sub nil) answers 304 echoing its cursor.
func (s *Subscriber) pollMany(w http.ResponseWriter, r *http.Request, sub pushstore.Subscription,
	cursors []pushstore.MessageID, channels int) {
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
	select {
	case <-sub.Ready():
	case <-timeout:
		sub.Cancel()
	case <-r.Context().Done():
		return
	}
	var buf [1]pushstore.Delivery
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
	h := w.Header()
	if m.ContentType != "" {
		h.Set("Content-Type", m.ContentType)
	} else {
		h["Content-Type"] = nil
	}
	h.Set("Last-Modified", lastModified(pushstore.MessageID{Time: ids.time}))
	h.Set("Etag", string(ids.appendTags(nil)))
	h.Set("Vary", "If-None-Match, If-Modified-Since")
	s.setCORS(h, r)
	h.Set("Access-Control-Expose-Headers", "Last-Modified, Etag")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", itoa(len(m.Body)))
	w.WriteHeader(http.StatusOK)
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
