package caddypush

import (
	"net"
	"strings"
	"testing"
)

// TestClientThatSentMoreAndLeft: a request that waits on HTTP/1.1 (a
// long-poll, and an EventSource stream behind encode, which stays on
// net/http's response) whose client sends bytes after its request and
// then closes the connection ends: the client left. net/http's background
// read stops at the first such byte, taking it for a pipelined request,
// and then never cancels the request's context; the connection probe
// (connwatch.go) sees the close. A client that closes without sending
// anything is seen at once, as before.
func TestClientThatSentMoreAndLeft(t *testing.T) {
	startMain(t)
	type left struct {
		ch string
		c  *rawConn
	}
	var all []left
	for _, extra := range []string{"", "x", "GET /sub?id=y HTTP/1.1\r\n"} {
		for _, req := range []string{
			"GET /gz/sub?id=%s HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
			"GET /sub?id=%s HTTP/1.1\r\nHost: localhost\r\n\r\n",
		} {
			ch := chanName(t, "c"+itoa(len(all)))
			c := rawStream(t, strings.Replace(req, "%s", ch, 1))
			waitFor(t, "the request to wait", func() bool { return waiters(t, "/"+ch) == 1 })
			if strings.Contains(req, "event-stream") {
				if head := c.head(); !strings.Contains(head, " 200 ") {
					t.Fatalf("head: %q", head)
				}
			}
			if _, err := c.conn.Write([]byte(extra)); err != nil {
				t.Fatal(err)
			}
			all = append(all, left{ch, c})
		}
	}
	for _, l := range all {
		_ = l.c.conn.(*net.TCPConn).Close()
	}
	for i, l := range all {
		waitFor(t, "the wait of client "+itoa(i)+" (it sent bytes and left) to end",
			func() bool { return waiters(t, "/"+l.ch) == 0 })
	}
}
