package caddypush

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// wsRawClient is a WebSocket client on a bare TCP connection, so a test
// decides when (and whether) a ping is answered.
type wsRawClient struct {
	conn net.Conn
	br   *bufio.Reader
}

func dialWSRaw(t *testing.T, path string) *wsRawClient {
	t.Helper()
	c := rawStream(t, "GET "+path+" HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if head := c.head(); !strings.Contains(head, " 101 ") {
		t.Fatalf("handshake: %q", head)
	}
	return &wsRawClient{conn: c.conn, br: c.br}
}

// next reads one frame: its opcode and payload.
func (c *wsRawClient) next() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(c.br, p)
	return h[0] & 0x0f, p, err
}

// pong sends a masked pong frame with payload p (under 126 bytes).
func (c *wsRawClient) pong(p []byte) error {
	key := [4]byte{1, 2, 3, 4}
	f := append([]byte{0x8a, 0x80 | byte(len(p))}, key[:]...)
	for i, b := range p {
		f = append(f, b^key[i%4])
	}
	_, err := c.conn.Write(f)
	return err
}

// TestPongGetsAWholeInterval: a WebSocket's client has one ping
// interval to answer a ping ("if the previous ping got no pong by the next
// one, the connection is closed"). Here the stream's ping is late: its
// goroutine was blocked writing to the client, which read nothing for 1.5
// intervals. The client then reads everything, and answers the ping 0.7
// intervals after it arrived: the connection must stay open and get the
// next ping.
func TestPongGetsAWholeInterval(t *testing.T) {
	const interval = 2 * time.Second
	tester := startMain(t)
	load(tester, strings.Replace(mainConfig, "\tpush_subscriber /s/ping {",
		"\tpush_subscriber /s/ping2s {\n\t\twebsocket_ping_interval 2s\n\t}\n\tpush_subscriber /s/ping {", 1))
	defer load(tester, mainConfig)
	ch := chanName(t, "p")
	c := dialWSRaw(t, "/s/ping2s?id="+ch)
	opened := time.Now()
	waitFor(t, "the WebSocket", func() bool { return waiters(t, "/"+ch) == 1 })

	// The client reads nothing: publish until a parked write is short, so
	// the stream's goroutine then blocks writing the rest.
	short := parkedShort.Load()
	for i := 0; parkedShort.Load() == short; i++ {
		if i == 200 { // 50 MiB: far past any socket buffer
			t.Fatal("no parked write was ever short")
		}
		publish(t, "/pub", ch, strings.Repeat("x", 256<<10))
	}
	// 1.5 intervals in: the ping due at 1 interval is held behind the
	// blocked write (there is nothing to wait on but the time).
	time.Sleep(time.Until(opened.Add(interval * 3 / 2)))

	type frame struct {
		op  byte
		err error
		at  time.Time
	}
	frames := make(chan frame, 1024)
	go func() {
		for {
			op, _, err := c.next()
			frames <- frame{op, err, time.Now()}
			if err != nil {
				return
			}
		}
	}()
	var pinged time.Time
	var answer <-chan time.Time
	for pings := 0; ; {
		select {
		case f := <-frames:
			switch {
			case f.err != nil:
				t.Fatalf("the connection ended (%v) %v after its first ping (which came %v after the stream opened), which the client answered %v after it came; the ping interval is %v",
					f.err, f.at.Sub(pinged).Round(10*time.Millisecond), pinged.Sub(opened).Round(10*time.Millisecond), interval*7/10, interval)
			case f.op == 0x9:
				pings++
				if pings == 2 {
					return // the second ping: the late answer to the first was taken
				}
				pinged = f.at
				answer = time.After(interval * 7 / 10) // a slow client, within the interval
			case f.op == 0x8:
				t.Fatalf("closed after %d pings", pings)
			}
		case <-answer:
			if err := c.pong(nil); err != nil {
				t.Fatal(err)
			}
			answer = nil
		case <-time.After(20 * time.Second):
			t.Fatal("no second ping within 20 s")
		}
	}
}
