package caddypush

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestWebSocketClientHeartbeat: with websocket_client_heartbeat (nchan's
// nchan_websocket_client_heartbeat), a client's heartbeat message, text or
// binary, is answered with the configured text, between the stream's
// messages, with and without permessage-deflate; it is not refused on a
// subscribe-only location (another message still is, with 1008), and not
// published on a pub/sub location.
func TestWebSocketClientHeartbeat(t *testing.T) {
	startMain(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, mode := range []websocket.CompressionMode{websocket.CompressionDisabled, websocket.CompressionContextTakeover} {
		opts := &websocket.DialOptions{CompressionMode: mode, CompressionThreshold: 1}
		ch := chanName(t, fmt.Sprint("s", mode))
		c := openWS(t, base+"/s/hb?id="+ch, opts)
		for _, op := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			if err := c.Write(ctx, op, []byte("PING")); err != nil {
				t.Fatal(err)
			}
			if typ, got := wsRead(t, c); typ != websocket.MessageText || got != "PONG" {
				t.Fatalf("compression %v: the heartbeat (%v) answered %v %q, want text PONG", mode, op, typ, got)
			}
		}
		publish(t, "/pub", ch, "m")
		if _, got := wsRead(t, c); got != "m" {
			t.Fatalf("compression %v: after the heartbeats, %q, want m", mode, got)
		}
		// Heartbeats while messages stream: every answer and message
		// arrives whole, the messages in order.
		const n, beats = 100, 30
		go func() {
			for i := range n {
				res, err := http.Post(base+"/pub?id="+ch, "", strings.NewReader(fmt.Sprint(i)))
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
			}
		}()
		go func() {
			for range beats {
				if c.Write(ctx, websocket.MessageText, []byte("PING")) != nil {
					return
				}
			}
		}()
		for next, pongs := 0, 0; next < n || pongs < beats; {
			switch _, got := wsRead(t, c); got {
			case "PONG":
				pongs++
			case fmt.Sprint(next):
				next++
			default:
				t.Fatalf("compression %v: %q after %d messages and %d answers, want %d or PONG", mode, got, next, pongs, next)
			}
		}
		if err := c.Write(ctx, websocket.MessageText, []byte("PINGS")); err != nil {
			t.Fatal(err)
		}
		if code, _ := wsClosed(t, c); code != websocket.StatusPolicyViolation {
			t.Fatalf("compression %v: a message that is not the heartbeat closed with %v, want 1008", mode, code)
		}

		ps := chanName(t, fmt.Sprint("ps", mode))
		a, b := openWS(t, base+"/ps/hb?id="+ps, opts), openWS(t, base+"/ps/hb?id="+ps, opts)
		if err := a.Write(ctx, websocket.MessageText, []byte("PING")); err != nil {
			t.Fatal(err)
		}
		if _, got := wsRead(t, a); got != "PONG" {
			t.Fatalf("compression %v: pub/sub heartbeat answered %q, want PONG", mode, got)
		}
		if err := a.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*websocket.Conn{a, b} {
			if _, got := wsRead(t, c); got != "hello" {
				t.Fatalf("compression %v: pub/sub got %q first, want hello (the heartbeat is not published)", mode, got)
			}
		}
	}
}
