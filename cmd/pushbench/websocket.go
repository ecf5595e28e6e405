package main

// The client side of WebSocket (RFC 6455), as much as a load tool needs:
// the opening handshake, a frame reader (fragmented messages, ping answered
// with pong, close), and masked frames on send. No extensions: the
// handshake offers none, so no server may use one.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

const (
	wsContinuation = 0x0
	wsText         = 0x1
	wsBinary       = 0x2
	wsClose        = 0x8
	wsPing         = 0x9
	wsPong         = 0xA

	wsMaxMessage = 16 << 20 // larger messages are refused
)

// wsConn is one WebSocket connection: frames are read from r and written
// (masked) to w.
type wsConn struct {
	r        *bufio.Reader
	w        io.Writer
	protocol string // the subprotocol the server chose
	msg      []byte // the message being reassembled
	wbuf     []byte
	closed   bool
}

var wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// wsAccept is the Sec-WebSocket-Accept a server must answer to key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// dialWebSocket opens a WebSocket on an http:// or ws:// URL, offering the
// subprotocols given (none if empty). The connection is closed when ctx
// ends.
func dialWebSocket(ctx context.Context, dial dialFunc, u string, protocols []string) (*wsConn, *stream, error) {
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	hdr := []string{"Upgrade", "websocket", "Connection", "Upgrade",
		"Sec-WebSocket-Key", key, "Sec-WebSocket-Version", "13"}
	if len(protocols) > 0 {
		hdr = append(hdr, "Sec-WebSocket-Protocol", strings.Join(protocols, ", "))
	}
	s, err := openStream(ctx, dial, u, hdr)
	if err != nil {
		return nil, nil, err
	}
	if s.head.status != 101 {
		s.close()
		return nil, nil, fmt.Errorf("websocket handshake: status %d", s.head.status)
	}
	if got := s.head.get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		s.close()
		return nil, nil, fmt.Errorf("websocket handshake: bad Sec-WebSocket-Accept %q", got)
	}
	if ext := s.head.get("Sec-WebSocket-Extensions"); ext != "" {
		s.close()
		return nil, nil, fmt.Errorf("websocket handshake: extension %q not offered", ext)
	}
	return &wsConn{r: s.br, w: s.c, protocol: s.head.get("Sec-WebSocket-Protocol")}, s, nil
}

// writeFrame sends one final frame with a random mask, as a client must.
func (c *wsConn) writeFrame(opcode byte, payload []byte) error {
	b := append(c.wbuf[:0], 0x80|opcode)
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= mask[i&3]
	}
	c.wbuf = b
	_, err := c.w.Write(b)
	return err
}

// readFrame reads one frame: FIN bit, opcode and the unmasked payload.
func (c *wsConn) readFrame() (fin bool, opcode byte, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(c.r, h[:]); err != nil {
		return
	}
	if h[0]&0x70 != 0 {
		return false, 0, nil, errors.New("websocket: reserved bits set (no extension was negotiated)")
	}
	fin, opcode = h[0]&0x80 != 0, h[0]&0x0F
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(c.r, e[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(c.r, e[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(e[:])
	}
	if n > wsMaxMessage {
		return false, 0, nil, fmt.Errorf("websocket: frame of %d bytes", n)
	}
	if opcode >= wsClose && (n > 125 || !fin) {
		return false, 0, nil, errors.New("websocket: bad control frame")
	}
	var mask [4]byte
	if masked { // servers must not mask, but tolerate it
		if _, err = io.ReadFull(c.r, mask[:]); err != nil {
			return
		}
	}
	payload = make([]byte, n)
	if _, err = io.ReadFull(c.r, payload); err != nil {
		return
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
	}
	return fin, opcode, payload, nil
}

// readMessage returns the next text or binary message, reassembling
// fragments; it answers pings with pongs and a close with a close, and
// then returns io.EOF.
func (c *wsConn) readMessage() (opcode byte, msg []byte, err error) {
	var first byte
	c.msg = nil
	for {
		fin, op, payload, err := c.readFrame()
		if err != nil {
			return 0, nil, err
		}
		switch op {
		case wsPing:
			if err := c.writeFrame(wsPong, payload); err != nil {
				return 0, nil, err
			}
			continue
		case wsPong:
			continue
		case wsClose:
			if !c.closed {
				c.closed = true
				code := payload
				if len(code) > 2 {
					code = code[:2]
				}
				_ = c.writeFrame(wsClose, code)
			}
			return wsClose, payload, io.EOF
		case wsText, wsBinary:
			if first != 0 {
				return 0, nil, errors.New("websocket: new message inside a fragmented one")
			}
			first = op
		case wsContinuation:
			if first == 0 {
				return 0, nil, errors.New("websocket: continuation without a message")
			}
		default:
			return 0, nil, fmt.Errorf("websocket: unknown opcode %d", op)
		}
		if fin && c.msg == nil {
			return first, payload, nil // the common case: one frame
		}
		c.msg = append(c.msg, payload...)
		if len(c.msg) > wsMaxMessage {
			return 0, nil, errors.New("websocket: message too large")
		}
		if fin {
			return first, c.msg, nil
		}
	}
}

// parseNchanMeta splits a ws+meta.nchan frame, "id: <id>\ncontent-type:
// <type>\n\n<body>", into its id and body.
func parseNchanMeta(b []byte) (id string, body []byte, ok bool) {
	s := string(b)
	i := strings.Index(s, "\n\n")
	if i < 0 {
		return "", nil, false
	}
	for _, line := range strings.Split(s[:i], "\n") {
		if v, found := strings.CutPrefix(line, "id: "); found {
			id = v
		}
	}
	return id, b[i+2:], true
}

// wsPublisher publishes over WebSockets to a publisher location (nchan's
// nchan_publisher, caddy-push's push_publisher): one socket per channel,
// opened on first use; each message is a text frame, and the server's
// answer frame (the channel's info) ends the publication.
type wsPublisher struct {
	dial    dialFunc
	sockets map[string]wsSocket
}

// wsSocket is an open publishing socket and the stream under it.
type wsSocket struct {
	c *wsConn
	s *stream
}

// publish sends body on url's socket and waits for the answer; it returns
// 200 for a text answer. A socket that fails is closed and dropped (the
// next publication opens another).
func (p *wsPublisher) publish(ctx context.Context, url string, body []byte) (int, error) {
	if _, ok := p.sockets[url]; !ok {
		if err := p.open(ctx, url); err != nil {
			return 0, err
		}
	}
	sock := p.sockets[url]
	err := sock.c.writeFrame(wsText, body)
	var op byte
	if err == nil {
		op, _, err = sock.c.readMessage()
	}
	if err == nil && op != wsText {
		err = fmt.Errorf("websocket publisher: answer of opcode %d", op)
	}
	if err != nil {
		sock.s.close()
		delete(p.sockets, url)
		return 0, err
	}
	return 200, nil
}

// open dials url's socket.
func (p *wsPublisher) open(ctx context.Context, url string) error {
	c, s, err := dialWebSocket(ctx, p.dial, url, nil)
	if err != nil {
		return err
	}
	if p.sockets == nil {
		p.sockets = map[string]wsSocket{}
	}
	p.sockets[url] = wsSocket{c, s}
	return nil
}

func (p *wsPublisher) close() {
	for _, sock := range p.sockets {
		sock.s.close()
	}
}
