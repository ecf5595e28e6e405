package main

// The push protocol (nginx HTTP Push Module, nchan, caddy-push): long-poll
// with a cursor, publish, channel info; and the message bodies pushbench
// sends (a sequence number and the send time, so latency, loss, duplicates
// and order are measured at the receiver).

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

var t0 = time.Now()

// mono returns nanoseconds since the tool started (monotonic clock).
func mono() int64 { return int64(time.Since(t0)) }

// chanURL fills a URL template with the channel id; a template without %s
// (Centrifugo's endpoints) is returned as it is.
func chanURL(tmpl, ch string) string {
	if !strings.Contains(tmpl, "%s") {
		return tmpl
	}
	return fmt.Sprintf(tmpl, ch)
}

// subURLFor is subscriber i's URL for channel ch: -sub may list several
// templates, comma-separated (two Caddys sharing a Redis store), which
// the subscribers share round-robin.
func subURLFor(cfg *config, i int, ch string) string {
	t := strings.Split(cfg.sub, ",")
	return chanURL(t[i%len(t)], ch)
}

// subState is a long-poll subscriber's cursor: the Last-Modified and Etag
// of the last message received are echoed back verbatim as
// If-Modified-Since and If-None-Match, so the server returns the next one.
type subState struct {
	lastMod string
	etag    string
}

// poll issues one long-poll GET. onWritten (may be nil) runs once the
// request has been written to the connection.
func (s *subState) poll(ctx context.Context, c httpConn, url string, onWritten func()) (response, error) {
	var hdr []string
	if s.lastMod != "" {
		hdr = append(hdr, "If-Modified-Since", s.lastMod)
	}
	if s.etag != "" {
		hdr = append(hdr, "If-None-Match", s.etag)
	}
	r, err := c.do(ctx, "GET", url, hdr, nil, onWritten)
	if err == nil && r.status == 200 {
		s.lastMod, s.etag = r.lastMod, r.etag
	}
	return r, err
}

// pollRetryable: 304 (push module timeout), 408 (nchan timeout).
func pollRetryable(status int) bool { return status == 304 || status == 408 }

var ctPlain = []string{"Content-Type", "text/plain"}

// publishPush POSTs body to a push-protocol publisher URL.
func publishPush(ctx context.Context, c httpConn, url string, body []byte) (int, error) {
	r, err := c.do(ctx, "POST", url, ctPlain, body, nil)
	return r.status, err
}

func publishOK(status int) bool { return status == 200 || status == 201 || status == 202 }

var activeSubsRe = regexp.MustCompile(`(?i)active subscribers:\s*(\d+)`)

// channelSubscribers GETs channel info from the publisher location and
// returns the active subscriber count; ok=false if the server does not
// report it.
func channelSubscribers(ctx context.Context, c httpConn, url string) (int, bool) {
	r, err := c.do(ctx, "GET", url, []string{"Accept", "text/json"}, nil, nil)
	if err != nil || r.status != 200 {
		return 0, false
	}
	var m map[string]any
	if json.Unmarshal(r.body, &m) == nil {
		if v, ok := m["subscribers"].(float64); ok {
			return int(v), true
		}
	}
	if mm := activeSubsRe.FindSubmatch(r.body); mm != nil {
		n, _ := strconv.Atoi(string(mm[1]))
		return n, true
	}
	return 0, false
}

// waitServerSubs polls channel info until it reports >= n subscribers, or
// the reported count has not changed for 1 s (nchan with several workers
// counts another worker's subscribers as one), or to expires. It returns
// (confirmed, infoSupported).
func waitServerSubs(ctx context.Context, c httpConn, url string, n int, to time.Duration) (bool, bool) {
	deadline := time.Now().Add(to)
	last, lastChange := -1, time.Now()
	for {
		got, ok := channelSubscribers(ctx, c, url)
		if !ok {
			return false, false
		}
		if got >= n {
			return true, true
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if time.Now().After(deadline) || ctx.Err() != nil || time.Since(lastChange) > 2*time.Second {
			return false, true
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// makeBody builds "pushbench seq=N t=MONO_NS " padded with 'x' to size
// bytes: one line of text, so it fits an EventSource data line and a
// WebSocket text frame as it is, and a JSON string for Centrifugo.
func makeBody(seq, t int64, size int) []byte {
	b := make([]byte, 0, size+40)
	b = append(b, "pushbench seq="...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, " t="...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// parseBody returns a body's sequence number and send time; it reads the
// bytes in place (no allocation: it runs for every delivery).
func parseBody(b []byte) (seq, t int64, ok bool) {
	const prefix = "pushbench seq="
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return 0, 0, false
	}
	b = b[len(prefix):]
	seq, b, ok = parseDigits(b)
	if !ok || len(b) < 3 || string(b[:3]) != " t=" {
		return 0, 0, false
	}
	t, b, ok = parseDigits(b[3:])
	if !ok || (len(b) > 0 && b[0] != ' ') {
		return 0, 0, false
	}
	return seq, t, true
}

// parseDigits reads a decimal number (at most 18 digits) at the start of b.
func parseDigits(b []byte) (n int64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && i < 18 && b[i] >= '0' && b[i] <= '9'; i++ {
		n = n*10 + int64(b[i]-'0')
	}
	return n, b[i:], i > 0
}

// publisher sends one message body to a channel, in the server's protocol.
type publisher func(ctx context.Context, c httpConn, ch string, body []byte) (int, error)

// newPublisher returns the publisher for -server, and what closes it: the
// push protocol (POST the body to -pub, or with -pub-websocket send it as
// a frame on a WebSocket to -pub, kept open per channel) or Centrifugo's
// HTTP API (POST /api/publish with the body wrapped in JSON).
func newPublisher(cfg *config) (publisher, func()) {
	if cfg.server == "centrifugo" {
		return func(ctx context.Context, c httpConn, ch string, body []byte) (int, error) {
			return publishCentrifugo(ctx, c, cfg.pub, cfg.apiKey, ch, body)
		}, func() {}
	}
	if cfg.pubWebSocket {
		var mu sync.Mutex
		sockets := &wsPublisher{dial: cfg.dial}
		return func(ctx context.Context, _ httpConn, ch string, body []byte) (int, error) {
				mu.Lock()
				defer mu.Unlock()
				return sockets.publish(ctx, chanURL(cfg.pub, ch), body)
			}, func() {
				mu.Lock()
				defer mu.Unlock()
				sockets.close()
			}
	}
	return func(ctx context.Context, c httpConn, ch string, body []byte) (int, error) {
		return publishPush(ctx, c, chanURL(cfg.pub, ch), body)
	}, func() {}
}
