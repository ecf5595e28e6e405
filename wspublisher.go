package caddypush

import (
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds publishing over a WebSocket to a publisher location, as
// nchan_publisher allows: every text or binary frame the client sends is
// published to the location's channel, and answered with a text frame
// holding the channel's info (the body a POST's answer has, in the format
// the handshake's Accept asks for). The socket receives no messages; a
// pub/sub location is where a socket both publishes and subscribes.

// Which ways a publisher location publishes (Publisher.Transports).
const (
	pubHTTP      = 1 << iota // POST, PUT, GET and DELETE requests
	pubWebSocket             // WebSocket frames
)

// parsePublisherTransports reads a publisher's transport names.
func parsePublisherTransports(names []string) (int, bool) {
	if len(names) == 0 {
		return pubHTTP | pubWebSocket, true
	}
	set := 0
	for _, n := range names {
		switch n {
		case "http":
			set |= pubHTTP
		case "websocket", "websockets", "ws":
			set |= pubWebSocket
		default:
			return 0, false
		}
	}
	return set, true
}

// refusePublisherTransport answers a request made in a way the location
// does not publish with 403, as nchan does.
func refusePublisherTransport(w http.ResponseWriter, websocketAsked bool) {
	if websocketAsked {
		writeText(w, http.StatusForbidden, "This location does not publish over WebSocket; it publishes over http.")
		return
	}
	writeText(w, http.StatusForbidden, "This location publishes over WebSocket only.")
}

// serveWebSocket upgrades r and publishes to key each message the client
// sends, answering each with the channel's info, until either side ends
// the connection. The reading goes on in a goroutine of its own, and the
// handler returns: the request's memory and the handler's deep stack are
// not kept for as long as the socket stays open.
func (p *Publisher) serveWebSocket(w http.ResponseWriter, r *http.Request, key string) {
	conn, err := p.upgrade(p.wsUpgrader, w, r)
	if err != nil {
		return // the upgrader answered
	}
	hijacked.Add() // the exit waits for the socket's end
	publishingSockets.add(conn, p.store)
	format, _ := negotiateInfo(acceptOf(r))
	typing := typingOf(r.Header)
	p.logger.Debug("websocket publisher opened", zap.String("channel", key))
	go func() {
		defer hijacked.Done()
		defer publishingSockets.remove(conn)
		defer finishClose(conn)
		defer containReader(p.logger)
		var reply []byte
		readPublications(conn, p, func(op int, bd *body) bool {
			defer bd.release() // a panic included
			res, ok := publishReceived(conn, p.store, key, typing.message(op, bd.data), p.opts, p.logger)
			if !ok {
				return false
			}
			logPublished(p.logger, key, len(bd.data), res)
			if res.Delivered > 0 {
				runtime.Gosched() // the subscribers first, as for a POST
			}
			reply = appendInfo(reply[:0], format, res.Info)
			_ = conn.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
			return conn.WriteMessage(websocket.TextMessage, reply) == nil
		})
		p.logger.Debug("websocket publisher closed", zap.String("channel", key))
	}()
}

// finishClose ends a publishing socket whose reading stopped: it waits up
// to wsCloseWait for the client's answer to a close frame sent to it (a
// client that closed first was answered by echoClose's handler, and this
// returns at once), then closes the connection.
func finishClose(conn *websocket.Conn) {
	_ = conn.SetReadDeadline(time.Now().Add(wsCloseWait))
	for range 8 { // data frames the client sent before it saw the close
		if _, _, err := conn.NextReader(); err != nil {
			break
		}
	}
	_ = conn.Close()
}

// publishingSockets are the open WebSockets of publisher locations, which
// the exit, and the closing of the store they publish into (a reload that
// switches stores), close (1001 Going Away): no store release ends them,
// as it ends a subscriber's stream.
var publishingSockets socketSet

// socketSet is a set of open WebSockets, each with the store it publishes
// into.
type socketSet struct {
	mu    sync.Mutex
	conns map[*websocket.Conn]pushstore.Store
}

func (s *socketSet) add(c *websocket.Conn, store pushstore.Store) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*websocket.Conn]pushstore.Store{}
	}
	s.conns[c] = store
	s.mu.Unlock()
}

func (s *socketSet) remove(c *websocket.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// len returns how many sockets are open.
func (s *socketSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// goingAway sends every socket that publishes into store (every socket,
// if store is nil) a close frame (1001), and closes those whose client
// has not answered it within wsCloseWait. It returns how many sockets it
// closed.
func (s *socketSet) goingAway(logger *zap.Logger, store pushstore.Store) int {
	s.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for c, st := range s.conns {
		if store == nil || st == store {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		// Each on its own: a client that reads nothing holds its close
		// frame's write for up to a second, and a reload that switches
		// stores waits here.
		go func() {
			closeWebSocket(c, websocket.CloseGoingAway, "", logger)
			time.AfterFunc(wsCloseWait, func() { _ = c.NetConn().Close() })
		}()
	}
	return len(conns)
}
