package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// This file speaks the push protocol: publish, long-poll with a cursor,
// channel info, and the message bodies pushbench sends (sequence number and
// send time, so latency and loss are measured at the receiver).

type client struct{ *http.Client }

// cursor is what a subscriber echoes back: Last-Modified and Etag.
type cursor struct{ lastModified, etag string }

// poll sends one subscriber GET with the cursor and returns the status and
// body; on 200 it advances the cursor.
func (c *client) poll(ctx context.Context, url string, cur *cursor) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if cur.lastModified != "" {
		req.Header.Set("If-Modified-Since", cur.lastModified)
	}
	if cur.etag != "" {
		req.Header.Set("If-None-Match", cur.etag)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode == http.StatusOK {
		cur.lastModified, cur.etag = res.Header.Get("Last-Modified"), res.Header.Get("Etag")
	}
	return res.StatusCode, body, err
}

// publish POSTs body and returns the status.
func (c *client) publish(ctx context.Context, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

func published(status int) bool { return status == 200 || status == 201 || status == 202 }

var textSubscribers = regexp.MustCompile(`active subscribers:\s*(\d+)`)

// subscribers reads a channel's waiter count from the publisher's channel
// info (JSON or text); ok is false when the server does not report it.
func (c *client) subscribers(ctx context.Context, url string) (int, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var info struct {
		Subscribers *int `json:"subscribers"`
	}
	if json.Unmarshal(body, &info) == nil && info.Subscribers != nil {
		return *info.Subscribers, true
	}
	if m := textSubscribers.FindSubmatch(body); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		return n, true
	}
	return 0, false
}

// awaitSubscribers polls channel info until n subscribers wait, up to 30 s;
// without channel info it waits one second.
func (c *client) awaitSubscribers(ctx context.Context, url string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, ok := c.subscribers(ctx, url)
		switch {
		case !ok:
			time.Sleep(time.Second)
			return nil
		case got >= n:
			return nil
		case time.Now().After(deadline) || ctx.Err() != nil:
			return fmt.Errorf("%d of %d subscribers waiting", got, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var t0 = time.Now()

// message makes a body of size bytes carrying seq and the send time.
func message(seq uint64, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint64(b[8:], uint64(time.Since(t0)))
	copy(b[16:], "pushbench")
	return b
}

// parseMessage returns a body's sequence number and its age.
func parseMessage(b []byte) (seq uint64, age time.Duration, ok bool) {
	if len(b) < 24 || !bytes.Equal(b[16:25], []byte("pushbench")) {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b), time.Since(t0) - time.Duration(binary.BigEndian.Uint64(b[8:])), true
}
