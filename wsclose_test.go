package caddypush

// A WebSocket heartbeat after the close frame, and the Upgrade header on
// several lines.

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// maskedText returns a client's (masked) text frame carrying p (under 126
// bytes).
func maskedText(p string) []byte {
	key := [4]byte{9, 8, 7, 6}
	f := append([]byte{0x81, 0x80 | byte(len(p))}, key[:]...)
	for i := range len(p) {
		f = append(f, p[i]^key[i%4])
	}
	return f
}

// TestHeartbeatNotAnsweredAfterClose: once the server has sent its
// close frame (the channel was deleted), a heartbeat the client sent
// meanwhile (it had not read the close yet) must not be answered: RFC 6455
// 5.5.1, "after sending a Close frame, the endpoint MUST NOT send any more
// data frames". On a connection without permessage-deflate the answer goes
// through wsConn, which gorilla's ErrCloseSent does not guard.
func TestHeartbeatNotAnsweredAfterClose(t *testing.T) {
	startMain(t)
	ch := chanName(t, "hbclose")
	c := dialWSRaw(t, "/s/hb?id="+ch)
	waitFor(t, "the WebSocket", func() bool { return waiters(t, "/"+ch) == 1 })
	if r := do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil); r.status != 200 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		op, p, err := c.next()
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
		if op == 0x8 {
			t.Logf("server's close frame: %q", p)
			break
		}
	}
	// The client's heartbeat, sent before it read the close frame.
	if _, err := c.conn.Write(maskedText("PING")); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		op, p, err := c.next()
		if err != nil {
			return // the connection ended, nothing after the close frame
		}
		t.Fatalf("after its close frame the server sent a frame: opcode %#x %q (a data frame after Close)", op, p)
	}
}

// TestUpgradeOnSeveralLines: Upgrade is a list header too (RFC 9110,
// 7.8), and gorilla's upgrader reads every line of it; a handshake whose
// Upgrade names websocket on its second line (or after another protocol
// on one line) is a WebSocket handshake the upgrader takes, but transport
// selection reads the first line alone (r.Header.Get) and serves it a
// long-poll.
func TestUpgradeOnSeveralLines(t *testing.T) {
	startMain(t)
	ch := chanName(t, "up")
	publish(t, "/pub", ch, "m")
	req := "GET /sub?id=" + ch + " HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n%sSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	for _, lines := range []string{"Upgrade: h2c\r\nUpgrade: websocket\r\n", "Upgrade: h2c, websocket\r\n"} {
		head := rawStream(t, fmt.Sprintf(req, lines)).head()
		if !strings.Contains(head, " 101 ") {
			t.Errorf("%q: not upgraded; head:\n%s", lines, head)
		}
	}
}
