package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
)

// runCatchup: -rounds messages are published to each of -channels fresh
// channels, then -subs long-poll subscribers per channel, one after
// another, each starting at the oldest, take them all, resuming from each
// answer's id: how many requests that takes, how long, and the server's
// CPU per message taken. On a location that answers several messages at
// once (caddy-push's longpoll_multipart_response, nchan's
// nchan_longpoll_multipart_response on) a multipart/mixed answer is split
// into its parts. Every message must come once and in order.
func runCatchup(ctx context.Context, cfg *config, r *result) error {
	C, N, S := cfg.channels, cfg.rounds, cfg.subs
	r.set("channels", C)
	r.set("rounds", N)
	r.set("subs", S)
	c := cfg.factory()
	defer c.close()
	for k := range C {
		ch := fmt.Sprintf("%s-catchup%d", cfg.runID, k)
		for i := 1; i <= N; i++ {
			if st, err := cfg.publish(ctx, c, ch, makeBody(int64(i), mono(), cfg.msgSize)); err != nil || !publishOK(st) {
				return fmt.Errorf("publish: %d %v", st, err)
			}
		}
	}
	cpu0 := sampleServer(cfg.pids, cfg.children)
	start := mono()
	requests, multipart := 0, 0
	for i := range S * C {
		k := i % C
		url := chanURL(cfg.sub, fmt.Sprintf("%s-catchup%d", cfg.runID, k))
		var s subState
		for next := int64(1); next <= int64(N); {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			resp, err := s.poll(ctx, c, url, nil)
			requests++
			if err != nil || resp.status != 200 {
				return fmt.Errorf("poll %d of channel %d: %d %v", requests, k, resp.status, err)
			}
			bodies, isMultipart, err := answerBodies(resp)
			if err != nil {
				return err
			}
			if isMultipart {
				multipart++
			}
			for _, b := range bodies {
				if seq, _, ok := parseBody(b); !ok || seq != next {
					return fmt.Errorf("channel %d: message %d where %d was next", k, seq, next)
				}
				next++
			}
		}
	}
	elapsed := mono() - start
	cpu1 := sampleServer(cfg.pids, cfg.children)
	total := int64(S * C * N)
	r.set("delivered", total)
	r.set("requests", requests)
	r.set("multipart_answers", multipart)
	r.set("messages_per_request", float64(total)/float64(requests))
	r.set("catchup_ms", float64(elapsed)/1e6/float64(S*C))
	r.set("deliveries_per_s", float64(total)/(float64(elapsed)/1e9))
	r.addServer(cpu0, cpu1, total, "delivery")
	return nil
}

// answerBodies returns the messages of a long-poll answer: its body, or
// the parts of a multipart/mixed one (a message each). The boundary is
// read as NchanSubscriber.js reads it, everything after `boundary=`:
// nchan's may hold a '/', which a MIME parser refuses unquoted.
func answerBodies(resp response) ([][]byte, bool, error) {
	rest, ok := strings.CutPrefix(resp.ctype, "multipart/mixed;")
	if !ok {
		return [][]byte{resp.body}, false, nil
	}
	_, boundary, _ := strings.Cut(rest, "boundary=")
	parts, err := splitParts(resp.body, strings.Trim(strings.TrimSpace(boundary), `"`))
	return parts, true, err
}

// splitParts returns the bodies of a multipart body's parts, as nchan
// writes them: `--B`, the part's headers, a blank line, the body, CRLF,
// and `--B--` at the end.
func splitParts(body []byte, boundary string) ([][]byte, error) {
	if boundary == "" {
		return nil, errors.New("multipart answer without a boundary")
	}
	delim := []byte("--" + boundary)
	if !bytes.HasPrefix(body, delim) {
		return nil, errors.New("multipart answer that does not start with its boundary")
	}
	var parts [][]byte
	rest := body[len(delim):]
	for {
		if bytes.HasPrefix(rest, []byte("--")) {
			return parts, nil
		}
		end := bytes.Index(rest, append([]byte("\r\n"), delim...))
		head := bytes.Index(rest, []byte("\r\n\r\n"))
		if end < 0 || head < 0 || head > end {
			return nil, errors.New("a multipart part cut short")
		}
		parts = append(parts, rest[head+4:end])
		rest = rest[end+2+len(delim):]
	}
}
