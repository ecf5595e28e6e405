package caddypush

import (
	"bytes"
	"io"
	"time"

	"github.com/gorilla/websocket"
)

// This file holds a WebSocket client's heartbeat (websocket_client_heartbeat,
// nchan's nchan_websocket_client_heartbeat): a message the client sends
// that is answered with another, for clients that cannot send a ping.

// WebSocketHeartbeat is a client's heartbeat message and its answer.
type WebSocketHeartbeat struct {
	// In is the message a client sends (its whole payload, text or
	// binary).
	In string `json:"in"`
	// Out is the text message it is answered with.
	Out string `json:"out"`
}

// heartbeat is a WebSocketHeartbeat ready to answer: its answer as a raw
// frame and as a prepared message (compressed once, for the connections
// with permessage-deflate).
type heartbeat struct {
	in       []byte
	frame    []byte
	prepared *websocket.PreparedMessage
}

func (h *WebSocketHeartbeat) prepare() *heartbeat {
	if h == nil {
		return nil
	}
	return &heartbeat{in: []byte(h.In), frame: appendFrame(nil, websocket.TextMessage, []byte(h.Out)),
		prepared: prepare(websocket.TextMessage, []byte(h.Out))}
}

// is reports whether a message the client sent, read from rd, is the
// heartbeat; what it read of one that is not is gone.
func (hb *heartbeat) is(rd io.Reader) bool {
	if hb == nil {
		return false
	}
	b := make([]byte, len(hb.in)+1)
	n, _ := io.ReadFull(rd, b)
	return n == len(hb.in) && bytes.Equal(b[:n], hb.in)
}

// answer sends the heartbeat's answer from the goroutine that reads the
// connection, between the stream's frames: on a connection with raw frames
// through wsConn, which writes one whole write at a time; through gorilla
// under the writer's lock, which its message writes take too.
func (ww *wsWriter) answer(hb *heartbeat) error {
	deadline := time.Now().Add(wsWriteTimeout)
	if ww.wc != nil {
		return ww.wc.writeFrame(hb.frame, deadline)
	}
	ww.gmu.Lock()
	defer ww.gmu.Unlock()
	_ = ww.conn.SetWriteDeadline(deadline)
	return ww.conn.WritePreparedMessage(hb.prepared)
}
