package caddypush

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the WebSocket transport: frames as nchan sends them
// (the body, or with the ws+meta.nchan subprotocol an `id:` and
// `content-type:` header before it), permessage-deflate with each message
// compressed once for every subscriber, close codes as nchan's, and, on a
// pub/sub location, publishing the frames a client sends.
//
// It uses github.com/gorilla/websocket for its prepared messages: a frame
// (and its compressed form) encoded once per publication and written to
// every connection. github.com/coder/websocket compresses inside each
// write, per connection, and cannot write a prepared frame (its issue
// #546), so a publication to N subscribers would be compressed N times.

// metaProtocol is nchan's subprotocol that puts the id and content type
// before each message's body, so a client can resume.
const metaProtocol = "ws+meta.nchan"

// The memo slots of a message's WebSocket frames, prepared once.
var (
	wsPlainSlot    = pushstore.NewMemoSlot() // the body alone
	wsMetaSlot     = pushstore.NewMemoSlot() // with the ws+meta.nchan header and the message's own id
	wsRawPlainSlot = pushstore.NewMemoSlot() // the body alone, as a frame's bytes
	wsRawMetaSlot  = pushstore.NewMemoSlot() // with the ws+meta.nchan header, as a frame's bytes
)

// offersDeflate reports whether a handshake offers permessage-deflate,
// which the upgrader (EnableCompression) then takes, as gorilla reads the
// offer: the first token of any extension in Sec-WebSocket-Extensions.
func offersDeflate(h http.Header) bool {
	for range deflateOffers(h) {
		return true
	}
	return false
}

// deflateOffers yields the parameters (each `name[=value]`) of every
// permessage-deflate offer of a handshake.
func deflateOffers(h http.Header) iter.Seq[[]string] {
	return func(yield func([]string) bool) {
		for _, v := range h.Values("Sec-Websocket-Extensions") {
			for ext := range strings.SplitSeq(v, ",") {
				params := strings.Split(ext, ";")
				if strings.EqualFold(strings.TrimSpace(params[0]), "permessage-deflate") && !yield(params[1:]) {
					return
				}
			}
		}
	}
}

// declineNarrowDeflate removes a handshake's permessage-deflate offers
// when every one of them asks the server for a window under 32 KiB
// (server_max_window_bits below 15): gorilla takes the first offer
// without reading its parameters and compresses with a 15-bit window,
// which such a client cannot inflate. Declining them (RFC 7692, 7.1.2.1)
// leaves the connection uncompressed.
func declineNarrowDeflate(h http.Header) {
	offered, usable := false, false
	for params := range deflateOffers(h) {
		offered = true
		narrow := false
		for _, p := range params {
			k, v, _ := strings.Cut(p, "=")
			if strings.EqualFold(strings.TrimSpace(k), "server_max_window_bits") {
				n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(v), `"`))
				narrow = narrow || err != nil || n < 15
			}
		}
		usable = usable || !narrow
	}
	if offered && !usable {
		h.Del("Sec-Websocket-Extensions")
	}
}

// wsWriteTimeout bounds writing one batch of frames to a client.
const wsWriteTimeout = 30 * time.Second

// wsCloseWait is how long a closing stream waits for the client's close
// frame before it closes the connection (nchan waits 250 ms).
const wsCloseWait = 250 * time.Millisecond

// wsRefusedDrain is the most of a refused frame's payload read (and
// dropped) before the close.
const wsRefusedDrain = 1 << 20

// wsWriteBuffers is the write buffer pool of every connection: an idle
// connection holds none.
var wsWriteBuffers sync.Pool

// upgrader returns the location's WebSocket upgrader, offering
// subprotocols.
func (cc *ChannelConfig) upgrader(subprotocols ...string) *websocket.Upgrader {
	return &websocket.Upgrader{
		HandshakeTimeout: 10 * time.Second,
		// Every idle stream holds its read buffer; a frame's payload
		// larger than it is read past it.
		ReadBufferSize:    512,
		WriteBufferSize:   4096,
		WriteBufferPool:   &wsWriteBuffers,
		Subprotocols:      subprotocols,
		EnableCompression: true,
		CheckOrigin: func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return cc.AllowOrigin == "*" || o == "" || o == cc.AllowOrigin
		},
		Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
			writeText(w, status, "WebSocket handshake refused: "+reason.Error()+".")
		},
	}
}

// wsWriter frames a stream for one WebSocket connection. On a connection
// without permessage-deflate it writes each message's frame itself,
// encoded once per publication, a batch of frames in one write straight to
// the connection (raw); with permessage-deflate, through gorilla's prepared
// messages, compressed once per publication. gorilla's own writes (pongs,
// close frames, pings) are one write each, which the connection never
// interleaves with another.
type wsWriter struct {
	conn     *websocket.Conn
	meta     bool         // ws+meta.nchan
	wc       *wsConn      // with raw frames (no permessage-deflate): the connection they go to
	out      []byte       // raw: the batch's frames
	lazy     lazyDeadline // raw: wsWriteTimeout
	deadline bool         // gorilla: set for the batch being written
	gmu      sync.Mutex   // gorilla: held by each message write (a heartbeat's answer comes from the reader)
	lastPong atomic.Int64
	pinged   int64 // when the last ping was sent (nanotime)
	scratch  []byte
}

// frameType is the opcode a message goes out with: binary for
// application/octet-stream, as nchan; and, where nchan sends an invalid
// text frame that makes browsers fail the connection, for a body that is
// not UTF-8.
func frameType(m *pushstore.Message) int {
	if m.ContentType == "application/octet-stream" || !utf8.Valid(m.Body) {
		return websocket.BinaryMessage
	}
	return websocket.TextMessage
}

// appendMeta appends the ws+meta.nchan header for id, and the body.
func appendMeta(b []byte, m *pushstore.Message, id []byte) []byte {
	b = append(append(append(b, "id: "...), id...), '\n')
	if m.ContentType != "" {
		b = append(append(append(b, "content-type: "...), m.ContentType...), '\n')
	}
	return append(append(b, '\n'), m.Body...)
}

// preparedFrames counts the frames prepared (and compressed, for the
// connections that negotiated permessage-deflate): one per publication
// and frame form, however many subscribers get it.
var preparedFrames atomic.Int64

func prepare(op int, data []byte) *websocket.PreparedMessage {
	preparedFrames.Add(1)
	pm, err := websocket.NewPreparedMessage(op, data)
	if err != nil {
		panic(err) // only for an invalid opcode
	}
	return pm
}

func (ww *wsWriter) message(m *pushstore.Message, ids *runningID) error {
	if ww.wc != nil {
		if ids == nil || !ww.meta {
			ww.out = append(ww.out, ww.rawFrame(m)...)
		} else {
			ww.scratch = appendMeta(ww.scratch[:0], m, ids.appendID(nil))
			ww.out = appendFrame(ww.out, frameType(m), ww.scratch)
		}
		return nil
	}
	ww.gmu.Lock()
	defer ww.gmu.Unlock()
	if !ww.deadline {
		_ = ww.conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
		ww.deadline = true
	}
	switch {
	case !ww.meta:
		return ww.conn.WritePreparedMessage(m.Memo(wsPlainSlot, func(m *pushstore.Message) any {
			return prepare(frameType(m), m.Body)
		}).(*websocket.PreparedMessage))
	case ids == nil:
		return ww.conn.WritePreparedMessage(m.Memo(wsMetaSlot, func(m *pushstore.Message) any {
			return prepare(frameType(m), appendMeta(nil, m, []byte(m.ID.String())))
		}).(*websocket.PreparedMessage))
	}
	ww.scratch = appendMeta(ww.scratch[:0], m, ids.appendID(nil))
	// Compressed here, for this connection alone (its compound id is its
	// own), into memory first: gorilla's WriteMessage compresses inside
	// the write, and keeps its flate compressor (1.2 MB) for as long as a
	// client that reads nothing blocks it (wsWriteTimeout). A prepared
	// message holds the compressor only while it compresses.
	pm, err := websocket.NewPreparedMessage(frameType(m), ww.scratch)
	if err != nil {
		return err
	}
	return ww.conn.WritePreparedMessage(pm)
}

// appendFrame appends an unmasked, unfragmented frame of opcode op (a
// server's frame, RFC 6455 section 5.2) carrying payload.
func appendFrame(b []byte, op int, payload []byte) []byte {
	n := len(payload)
	b = append(b, 0x80|byte(op)) // FIN, no RSV bits
	switch {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// ping sends a ping, and ends the stream when the previous one got no pong
// (as nchan).
func (ww *wsWriter) ping() error {
	if ww.pinged != 0 && ww.lastPong.Load() < ww.pinged {
		return errors.New("no pong")
	}
	ww.pinged = nanotime()
	return ww.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wsWriteTimeout))
}

// wsCloses are the close frames that end a stream, as nchan's where it has
// one.
var wsCloses = map[streamEnd]struct {
	code   int
	reason string
}{
	endDeleted:   {websocket.CloseGoingAway, "410 Gone"},
	endTimeout:   {websocket.CloseNormalClosure, "408 Request Timeout"},
	endDisplaced: {websocket.ClosePolicyViolation, "409 Conflict"},
	endShutdown:  {websocket.CloseGoingAway, "503 Service Unavailable"},
	endBehind:    {websocket.CloseTryAgainLater, "fell behind by more than stream_queue_size"},
}

func (ww *wsWriter) end(why streamEnd) error {
	_ = ww.flush() // the frames of the last batch go before the close frame
	if ww.wc != nil {
		// No heartbeat answer after the close frame (RFC 6455 5.5.1).
		ww.wc.mu.Lock()
		ww.wc.closing = true
		ww.wc.mu.Unlock()
	}
	c := wsCloses[why]
	return ww.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(c.code, c.reason),
		time.Now().Add(time.Second))
}

// closeAfter does nothing: a WebSocket's connection closes when its
// handler returns.
func (ww *wsWriter) closeAfter() {}

// canInline reports whether a parked stream may be written to by a
// publisher: raw frames on a TCP connection.
func (ww *wsWriter) canInline() bool { return ww.wc != nil && ww.wc.raw != nil }

func (ww *wsWriter) idle() { ww.wc.idle(&ww.lazy) }

// rawFrame returns m's memoized raw frame, with its own id under
// ws+meta.nchan.
func (ww *wsWriter) rawFrame(m *pushstore.Message) []byte {
	if !ww.meta {
		return m.Memo(wsRawPlainSlot, func(m *pushstore.Message) any {
			return appendFrame(nil, frameType(m), m.Body)
		}).([]byte)
	}
	return m.Memo(wsRawMetaSlot, func(m *pushstore.Message) any {
		return appendFrame(nil, frameType(m), appendMeta(nil, m, []byte(m.ID.String())))
	}).([]byte)
}

// sendNow writes m's memoized frame to a parked WebSocket without
// copying it, unless a batch waits or another write is under way (then
// the frame joins the batch, for the stream to send).
func (ww *wsWriter) sendNow(m *pushstore.Message) bool {
	if len(ww.out) > 0 {
		return sendBatched(ww, m)
	}
	f := ww.rawFrame(m)
	wrote, all := ww.wc.writeNow(f)
	if !wrote {
		ww.out = append(ww.out, f...)
	}
	return all
}

// flushNow writes a raw batch without blocking (see wsConn.writeNow) and
// reports whether all of it went; the rest goes with the next write.
func (ww *wsWriter) flushNow() bool {
	if len(ww.out) == 0 {
		return true
	}
	wrote, all := ww.wc.writeNow(ww.out)
	if wrote {
		ww.out = reuseBatch(ww.out, 0)
	}
	return all
}

// flush writes a raw batch in one write, under a lazy deadline of
// wsWriteTimeout; gorilla writes each frame out.
func (ww *wsWriter) flush() error {
	ww.deadline = false
	if ww.wc == nil {
		return nil
	}
	err := ww.wc.writeOwn(ww.out, &ww.lazy) // and what a parked write left
	ww.out = reuseBatch(ww.out, 0)
	return err
}

// wsHandshakeOK reports whether the upgrader will take r's handshake: its
// origin is allowed, and it names version 13 and carries a key of 16
// bytes.
func (s *Subscriber) wsHandshakeOK(r *http.Request) bool {
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-Websocket-Key"))
	return err == nil && len(key) == 16 && r.Header.Get("Sec-Websocket-Version") == "13" &&
		s.wsUpgrader.CheckOrigin(r)
}

// serveWebSocket upgrades r and streams sub on it until either side ends
// it; on a pub/sub location the frames the client sends are published.
// The stream goes on in goroutines of its own once the connection is
// upgraded, and the handler returns: the request's memory and the
// handler's deep stack are not kept for as long as the stream lasts.
// ended is called when the stream is over.
func (s *Subscriber) serveWebSocket(w http.ResponseWriter, r *http.Request, keys []string, sub pushstore.Subscription,
	ids *runningID, st *stall, ended func()) {
	conn, err := s.upgrade(s.wsUpgrader, w, r)
	if err != nil {
		sub.Cancel()
		ended()
		return // the upgrader answered
	}
	hijacked.Add() // the exit waits for the stream's end
	ww := &wsWriter{conn: conn, meta: conn.Subprotocol() == metaProtocol}
	if !offersDeflate(r.Header) {
		ww.wc, _ = conn.NetConn().(*wsConn) // hijacker's
		ww.lazy.timeout = wsWriteTimeout
		if ww.wc != nil {
			ww.wc.mu.Lock()
			ww.wc.parks = ww.wc.raw != nil
			ww.wc.mu.Unlock()
		}
	}
	// A client that takes nothing cannot read a close frame either.
	st.open(func() { _ = conn.UnderlyingConn().Close() })
	conn.SetPongHandler(func(string) error {
		ww.lastPong.Store(nanotime())
		return nil
	})
	// A client's ping is answered within the stream's write budget, not
	// gorilla's default second: a pong that times out leaves gorilla's
	// writer failed for good, and with it every later ping, pong and close
	// frame, while the stream's own frames would still go. A pong that
	// fails ends the reader, and the stream with it.
	conn.SetPingHandler(func(data string) error {
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(wsWriteTimeout))
		if err == nil || errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	gone := newLeaving()
	if s.Publish != nil {
		s.Publish.nameEvent(r) // what its frames publish
	}
	go s.readWebSocket(conn, ww, typingOf(r.Header), keys, gone)
	ping := time.Duration(s.WebSocketPingInterval)
	go s.pump(ww, sub, ids, ping, nil, gone, func() {
		select { // the client's close frame, or its going away
		case <-gone.c:
		case <-time.After(wsCloseWait):
		}
		_ = conn.Close()
		ended()
		hijacked.Done()
	})
}

// readWebSocket reads what the client sends until the connection ends,
// then says the client left (gone). Control frames are answered by the
// connection (a close is echoed). On a pub/sub location each text or
// binary frame is published; elsewhere a frame closes the connection with
// 1008, whatever its size. The client's heartbeat, if the location has
// one, is answered (ww) instead.
func (s *Subscriber) readWebSocket(conn *websocket.Conn, ww *wsWriter, typing frameTyping, keys []string, gone *leaving) {
	defer gone.leave()
	defer containReader(s.logger)
	pub := s.Publish
	if pub == nil || !s.wsPublish {
		waitReadable(conn)
		// A frame here is refused whatever its size, with 1008, as
		// nchan refuses it. Its payload is read and dropped, up to
		// wsRefusedDrain, so the client is not reset while it still
		// sends it; nothing of it is kept.
		conn.SetReadLimit(0)
		for {
			_, rd, err := conn.NextReader()
			if err != nil {
				return
			}
			if s.heartbeat.is(rd) {
				if ww.answer(s.heartbeat) != nil {
					return
				}
				continue
			}
			_, _ = io.CopyN(io.Discard, rd, wsRefusedDrain)
			closeWebSocket(conn, websocket.ClosePolicyViolation, "Publishing not allowed.", s.logger)
			return
		}
	}
	readPublications(conn, pub, func(op int, bd *body) bool {
		if s.heartbeat != nil && bytes.Equal(bd.data, s.heartbeat.in) {
			bd.release()
			return ww.answer(s.heartbeat) == nil
		}
		return s.publishFrame(conn, typing, keys, op, bd)
	})
}

// waitReadable waits for a client's first bytes in a shallow stack: most
// clients send nothing while they subscribe, and a goroutine blocked in
// gorilla's read would keep a stack of twice the smallest size for as long
// as the connection is idle (about 3 KB more per idle WebSocket).
func waitReadable(conn *websocket.Conn) {
	if wc, ok := conn.NetConn().(*wsConn); ok {
		wc.waitReadable()
	}
}

// readPublications reads the messages a client sends on conn, under pub's
// limits, and hands each to publish, which releases its body and reports
// whether the connection stays open, until the connection ends or a
// message is refused (which closes it: 1009 over max_message_size, 1011
// naming 503 or 408 when max_body_memory is full or body_timeout passes).
func readPublications(conn *websocket.Conn, pub *Publisher, publish func(op int, bd *body) bool) {
	waitReadable(conn)
	// The read limit refuses a frame whose length on the wire is over
	// max_message_size before any of it is read; a compressed frame is
	// limited again as it inflates, so memory grows with what was sent,
	// not with what the compression announces. A message is read as a
	// POST's body is: within body_timeout from its first frame's header,
	// charged to max_body_memory as it arrives.
	conn.SetReadLimit(pub.MaxMessageSize)
	for {
		op, bd, err := readFrame(conn, pub.MaxMessageSize, time.Duration(pub.BodyTimeout))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			countPublish(http.StatusRequestEntityTooLarge)
			closeWebSocket(conn, websocket.CloseMessageTooBig, "", pub.logger)
			return
		case errors.Is(err, websocket.ErrReadLimit):
			countPublish(http.StatusRequestEntityTooLarge) // gorilla closed it with 1009
			return
		case errors.Is(err, errBodyMemory), errors.Is(err, errBodyTimeout):
			status := http.StatusServiceUnavailable
			if errors.Is(err, errBodyTimeout) {
				status = http.StatusRequestTimeout
			}
			refuseFrame(conn, status, pub.logger)
			return
		case err != nil:
			return // closed or gone
		}
		if !publish(op, bd) {
			return
		}
	}
}

// publishFrame publishes a message a client sent on a pub/sub location,
// and releases its body; it reports whether the connection stays open
// (a refusal closes it).
func (s *Subscriber) publishFrame(conn *websocket.Conn, typing frameTyping, keys []string, op int, bd *body) bool {
	defer bd.release() // a panic included
	if len(keys) != 1 {
		closeWebSocket(conn, websocket.ClosePolicyViolation, "Publishing to several channels at once is not supported.", s.logger)
		return false
	}
	_, ok := publishReceived(conn, s.store, keys[0], typing.message(op, bd.data), s.Publish.opts, s.logger)
	return ok
}

// publishReceived publishes msg, a message a client sent on conn, to key,
// counting the outcome as a POST's; a refusal closes the connection. It
// reports whether the message was published.
func publishReceived(conn *websocket.Conn, store pushstore.Store, key string, msg *pushstore.Message,
	opts pushstore.PublishOptions, logger *zap.Logger,
) (pushstore.PublishResult, bool) {
	if h := testHookFrame.Load(); h != nil {
		(*h)(msg.Body)
	}
	res, err := store.Publish(key, msg, opts)
	if err != nil {
		status, _ := refusal(err)
		refuseFrame(conn, status, logger)
		return res, false
	}
	countPublish(publishedStatus(res))
	return res, true
}

// refuseFrame counts a message refused with status and closes the
// connection with 1011 and the status, as nchan does.
func refuseFrame(conn *websocket.Conn, status int, logger *zap.Logger) {
	countPublish(status)
	closeWebSocket(conn, websocket.CloseInternalServerErr, itoa(status)+" "+http.StatusText(status), logger)
}

// testHookFrame, set by the tests, is called with each frame a client
// sends to publish (a test makes it panic).
var testHookFrame atomic.Pointer[func([]byte)]

// containReader keeps a panic in a WebSocket's reader (no handler's
// goroutine) to its connection, as pump.contain does for the stream: it is
// logged with its stack, and the stream ends as when the client leaves.
func containReader(logger *zap.Logger) {
	if r := recover(); r != nil {
		logger.Error("panic reading a websocket; the stream ends", zap.Any("panic", r), zap.Stack("stack"))
	}
}

// frameTyping is what a frame a client sent takes from its handshake, as
// nchan: the Content-Type of a text frame and the X-EventSource-Event
// every frame publishes with. It is read once per socket and kept instead
// of the request, which the socket outlives.
type frameTyping struct {
	contentType, event string
}

// typingOf reads a handshake's frameTyping.
func typingOf(h http.Header) frameTyping {
	return frameTyping{contentType: h.Get("Content-Type"), event: h.Get("X-EventSource-Event")}
}

// message is the message a frame a client sent publishes: its payload,
// with the content type application/octet-stream for a binary frame and
// the handshake's for a text frame, and the handshake's event name.
func (ft frameTyping) message(op int, data []byte) *pushstore.Message {
	msg := &pushstore.Message{Body: data, Event: ft.event, ContentType: ft.contentType}
	if op == websocket.BinaryMessage {
		msg.ContentType = "application/octet-stream"
	}
	return msg
}

// readFrame reads the next message of conn, at most limit bytes once
// inflated (conn's read limit bounds only its bytes on the wire), within
// timeout of its first frame's header (0: none), into a body charged to
// max_body_memory, which the caller releases; it fails as readInto does
// (an *http.MaxBytesError past limit). Between messages a connection may
// be idle for as long as it likes.
func readFrame(conn *websocket.Conn, limit int64, timeout time.Duration) (int, *body, error) {
	op, rd, err := conn.NextReader()
	if err != nil {
		return op, nil, err
	}
	if timeout > 0 {
		_ = conn.SetReadDeadline(time.Now().Add(timeout))
	}
	bd, err := readInto(rd, -1, limit)
	if err != nil {
		if timeout > 0 && isTimeout(err) {
			err = errBodyTimeout
		}
		return op, nil, err
	}
	if timeout > 0 {
		_ = conn.SetReadDeadline(time.Time{})
	}
	return op, bd, nil
}

// upgrade upgrades r with u on the connection under Caddy's response
// writers (hijacker), with the location's CORS headers when r has an
// Origin, and makes the connection answer a client's close frame as nchan
// does (echoClose). When it fails, u has answered.
func (cc *ChannelConfig) upgrade(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	header := http.Header{}
	if o := r.Header.Get("Origin"); o != "" {
		cc.setCORS(header, r)
	}
	declineNarrowDeflate(r.Header)
	conn, err := u.Upgrade(hijacker{w}, r, header)
	if err == nil {
		echoClose(conn)
	}
	return conn, err
}

// echoClose makes conn answer a client's close frame with its code and
// reason, as nchan does (gorilla's own answer leaves the reason out).
func echoClose(conn *websocket.Conn) {
	conn.SetCloseHandler(func(code int, reason string) error {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
			time.Now().Add(time.Second))
		return nil
	})
}

// closeWebSocket sends a close frame; the read loop then ends.
func closeWebSocket(conn *websocket.Conn, code int, reason string, logger *zap.Logger) {
	if err := conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
		time.Now().Add(time.Second)); err != nil {
		logger.Debug("closing websocket", zap.Error(err))
	}
}

// hijacker hands gorilla/websocket, which looks for http.Hijacker on the
// writer itself, the connection of net/http's response under Caddy's
// response writer wrappers: the stream outlives the handler, so no
// wrapper may see its writes (the access log's recorder counts a
// connection hijacked through it).
type hijacker struct{ http.ResponseWriter }

func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(innermost(h.ResponseWriter)).Hijack()
	if err != nil {
		return c, rw, err
	}
	return &wsConn{Conn: c, leftover: leftover{raw: rawOf(c)}}, rw, nil
}

// wsConn is a WebSocket's connection as gorilla and the stream write to
// it: one write at a time, each after what a parked write left
// (pending), so that gorilla's own frames (pongs and close frames, written
// from the reader's goroutine) never land inside a frame a publisher
// began. gorilla's write deadlines apply to its own writes only: it sets
// one before each (a pong's is a second away) and leaves it on the
// connection, where the stream's raw frames would inherit it.
type wsConn struct {
	net.Conn
	mu sync.Mutex // guards what follows, and every write
	leftover
	theirs  time.Time // gorilla's deadline for its next write
	moved   bool      // a write of gorilla's moved the connection's deadline
	parks   bool      // the stream may park: gorilla's deadlines are taken off after its writes
	closing bool      // the stream's close frame is going or went: no more frames of the server's own (writeFrame)
}

// SetWriteDeadline is gorilla's: it applies to gorilla's next write.
func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.theirs = t
	c.mu.Unlock()
	return nil
}

// Write is gorilla's (the handshake's answer, control frames, and every
// frame of a connection with permessage-deflate), under its deadline.
func (c *wsConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeUnder(p, c.theirs)
}

// writeUnder writes p, after what a parked write left, under deadline,
// which a write of the stream's own then moves (moved); c.mu is held.
func (c *wsConn) writeUnder(p []byte, deadline time.Time) (int, error) {
	_ = c.Conn.SetWriteDeadline(deadline)
	c.moved = true
	if err := c.writePending(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.broken()
	} else if c.parks && !deadline.IsZero() {
		// A parked write would fail once the deadline passed (a
		// pong's is a second away).
		_ = c.Conn.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// writeOwn is the stream's write of raw frames, under its lazy deadline
// (moved again when a write of gorilla's set another); c.mu is not held.
func (c *wsConn) writeOwn(p []byte, ld *lazyDeadline) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.moved {
		c.moved = false
		ld.armed = time.Time{}
	}
	ld.arm(c.Conn)
	if err := c.writePending(); err != nil || len(p) == 0 {
		return err
	}
	_, err := c.Conn.Write(p)
	if err != nil {
		c.broken()
	}
	return err
}

// writeFrame writes p, whole frames of the server's own, from another
// goroutine than the stream's (a heartbeat's answer), under deadline.
func (c *wsConn) writeFrame(p []byte, deadline time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return websocket.ErrCloseSent
	}
	_, err := c.writeUnder(p, deadline)
	return err
}

// broken closes the connection after a write that failed; c.mu is held.
// What went may end inside a frame, and any frame after it (gorilla's
// close or pong) would be read as that frame's bytes.
func (c *wsConn) broken() { _ = c.Conn.Close() }

// idle takes the connection's write deadline off (see
// inlineWriter.idle): the stream's lazy one, or one a write of gorilla's
// set.
func (c *wsConn) idle(ld *lazyDeadline) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.moved {
		c.moved = false
		ld.clean = false
	}
	ld.clear(c.Conn)
}

// writePending writes what a parked write left; c.mu is held. If it
// cannot, the connection is closed (broken).
func (c *wsConn) writePending() error {
	err := c.leftover.writePending(c.Conn)
	if err != nil {
		c.broken()
	}
	return err
}

// writeNow writes b without blocking, for a parked stream. It reports
// whether it wrote (false when another write is under way: nothing went,
// b is the caller's still) and whether all of b went (what did not is
// kept, for the next write).
func (c *wsConn) writeNow(b []byte) (wrote, all bool) {
	if !c.mu.TryLock() {
		return false, false
	}
	defer c.mu.Unlock()
	if len(c.pending) > 0 {
		return false, false
	}
	return true, c.leftover.writeNow(b)
}
