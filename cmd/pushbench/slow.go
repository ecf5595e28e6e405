package main

// The slow scenario: one subscriber that never reads beside S that do.
//
//	slow  (eventsource, websocket) S reading subscribers and -slow-subs
//	      (default 1) EventSource requests whose clients never read (a 4 KiB
//	      receive buffer) on one channel; -total bytes published in -msg-size messages, the
//	      publisher at most -window messages ahead of the slowest reader.
//	      Reports the server's RSS before, at its highest and after, and
//	      whether the server cut the slow connections; the readers must get
//	      every message (the server's memory must not hold what the slow
//	      ones cannot take, and the others must lose nothing). A run with
//	      -slow-subs 0 gives the growth the load itself causes.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// runStreamSlow: see the file comment.
func runStreamSlow(ctx context.Context, cfg *config, r *result) error {
	if cfg.server != "push" {
		return errors.New("-scenario slow speaks the push protocol only")
	}
	S := cfg.subs
	n := max(int(cfg.total/int64(cfg.msgSize)), 1)
	ch := cfg.runID + "-slow"
	r.set("subs", S)
	r.set("messages", n)
	r.set("msg_size", cfg.msgSize)
	r.set("total_bytes", int64(n)*int64(cfg.msgSize))

	c := cfg.factory()
	defer c.close()
	time.Sleep(200 * time.Millisecond)
	before := sampleServer(cfg.pids, cfg.children)

	r.set("slow_subs", cfg.slowSubs)
	var slow []net.Conn
	for range cfg.slowSubs {
		conn, err := dialNonReader(ctx, cfg, subURLFor(cfg, 0, ch))
		if err != nil {
			return fmt.Errorf("a non-reading subscriber: %w", err)
		}
		defer conn.Close()
		slow = append(slow, conn)
	}
	f := startFleet(ctx, cfg, cfg.newSub, S, func(int) string { return ch }, nil)
	defer f.stop()
	if err := f.await(ctx, cfg, c, ch, S+cfg.slowSubs, r); err != nil {
		return err
	}
	peak := sampleServer(cfg.pids, cfg.children)
	cpu0 := peak
	pubErrs := 0
	for i := 1; i <= n && ctx.Err() == nil; i++ {
		for int64(i)-f.minUniq() > int64(cfg.window) && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		if st, err := cfg.publish(ctx, c, ch, makeBody(int64(i), mono(), cfg.msgSize)); err != nil || !publishOK(st) {
			pubErrs++
			r.set("last_publish_error", fmt.Sprint(st, " ", err))
		}
		if i%64 == 0 {
			if s := sampleServer(cfg.pids, cfg.children); s.rssKB > peak.rssKB {
				peak = s
			}
		}
	}
	deadline := time.Now().Add(cfg.drain)
	for f.minUniq() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	end := sampleServer(cfg.pids, cfg.children)
	f.stop()
	delivered := f.summarize(r, int64(n))
	r.addServer(cpu0, end, delivered, "delivery")
	r.set("publish_errors", pubErrs)
	if len(slow) > 0 {
		cut, known := serverClosed(slow[0], 10*time.Second)
		if known {
			r.set("slow_cut", cut)
		}
	}
	if before.ok {
		r.set("server_rss_kb_before", before.rssKB)
		r.set("server_rss_kb_peak", max(peak.rssKB, end.rssKB))
		r.set("server_rss_kb_growth", max(peak.rssKB, end.rssKB)-before.rssKB)
	}
	if pubErrs > 0 {
		return errors.New("publish errors")
	}
	return nil
}

// dialNonReader opens an EventSource request on a connection whose
// receive buffer is 4 KiB and which is never read, and returns once the
// request is written.
func dialNonReader(ctx context.Context, cfg *config, rawURL string) (net.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	conn, err := cfg.dial(ctx, u.Host)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", u.RequestURI(), u.Host)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// serverClosed waits up to `within` for the server to close its side of
// conn, watched in Linux's /proc/net/tcp{,6} (the server is on this
// machine): reading the connection would not tell, since the kernel still
// delivers what the server left, through the client's small window, before
// the end. known is false where /proc/net/tcp cannot be read.
func serverClosed(conn net.Conn, within time.Duration) (closed, known bool) {
	server := fmt.Sprintf(":%04X", conn.RemoteAddr().(*net.TCPAddr).Port)
	client := fmt.Sprintf(":%04X", conn.LocalAddr().(*net.TCPAddr).Port)
	deadline := time.Now().Add(within)
	for {
		established, read := false, false
		for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			read = true
			for _, line := range strings.Split(string(b), "\n") {
				fs := strings.Fields(line) // sl, local, remote, state (01: established)
				if len(fs) > 3 && strings.HasSuffix(fs[1], server) && strings.HasSuffix(fs[2], client) && fs[3] == "01" {
					established = true
				}
			}
		}
		if !read {
			return false, false
		}
		if !established {
			return true, true
		}
		if time.Now().After(deadline) {
			return false, true
		}
		time.Sleep(50 * time.Millisecond)
	}
}
