package caddypush

import (
	"crypto/tls"
	"io"
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

// TestClientThatSentMoreAndLeftOverTLS: the same for a long-poll over
// HTTPS (HTTP/1.1), whose connection the probe finds under the TLS one.
func TestClientThatSentMoreAndLeftOverTLS(t *testing.T) {
	tester := startMain(t)
	load(tester, strings.Replace(mainConfig, ":9080 {", "https://localhost:9443 {\n\ttls internal\n\tpush_publisher /tls/pub\n\tpush_subscriber /tls/sub\n}\n:9080 {", 1))
	defer load(tester, mainConfig)
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", "localhost:9443", &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}}) // Caddy's internal CA
		if err != nil {
			return nil
		}
		return c
	}
	waitFor(t, "HTTPS with the internal certificate", func() bool {
		c := dial()
		if c != nil {
			c.Close()
		}
		return c != nil
	})
	ch := chanName(t, "tls")
	c := dial()
	if c == nil {
		t.Fatal("no TLS connection")
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /tls/sub?id="+ch+" HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the long-poll to wait", func() bool { return waiters(t, "/"+ch) == 1 })
	if _, err := io.WriteString(c, "x"); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	waitFor(t, "the long-poll of the client that sent a byte and left to end", func() bool { return waiters(t, "/"+ch) == 0 })
}
