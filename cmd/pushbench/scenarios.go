package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is one subscriber's view: what it got, in order, and when.
type receiver struct {
	next     uint64 // the sequence number it expects
	lost     uint64 // numbers skipped
	dup      uint64 // numbers received again (or out of order)
	received atomic.Uint64
	lat      []time.Duration
	errors   int
}

// take records one message body.
func (rc *receiver) take(body []byte) {
	seq, age, ok := parseMessage(body)
	if !ok {
		rc.errors++
		return
	}
	switch {
	case seq < rc.next:
		rc.dup++
		return
	case seq > rc.next:
		rc.lost += seq - rc.next
	}
	rc.next = seq + 1
	rc.lat = append(rc.lat, age)
	rc.received.Add(1)
}

// listen long-polls url until it has `want` messages or ctx ends, calling
// each after every message.
func (rc *receiver) listen(ctx context.Context, cl *client, url string, want uint64, each func()) {
	var cur cursor
	for rc.next < want && ctx.Err() == nil {
		status, body, err := cl.poll(ctx, url, &cur)
		switch {
		case ctx.Err() != nil: // stopped
		case err != nil || (status != 200 && status != 304 && status != 408):
			rc.errors++
			if rc.errors > 100 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		case status == 200:
			rc.take(body)
			if each != nil {
				each()
			}
		}
	}
}

// subURLs returns the subscriber URLs of a channel, one per -sub template.
func subURLs(c *config, ch string) []string {
	var urls []string
	for _, tmpl := range strings.Split(c.sub, ",") {
		urls = append(urls, fmt.Sprintf(tmpl, ch))
	}
	return urls
}

// startReceivers starts n subscribers, spread round-robin over urls, that
// listen until they have `want` messages; wait(stop) waits for them to
// end, stopping them first if asked.
func startReceivers(ctx context.Context, cl *client, urls []string, n int, want uint64, each func()) ([]*receiver, func(stop bool)) {
	rcs := make([]*receiver, n)
	var wg sync.WaitGroup
	subCtx, stop := context.WithCancel(ctx)
	for i := range rcs {
		rcs[i] = &receiver{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rcs[i].listen(subCtx, cl, urls[i%len(urls)], want, each)
		}()
	}
	return rcs, func(stopFirst bool) {
		if stopFirst {
			stop()
		}
		wg.Wait()
		stop()
	}
}

// summarize adds the receivers' delivery figures to res.
func summarize(res result, rcs []*receiver, expected uint64) uint64 {
	var got, lost, dup, errs uint64
	var lat []time.Duration
	for _, rc := range rcs {
		got += rc.received.Load()
		lost += rc.lost + (expected - min(expected, rc.next)) // skipped, and never reached
		dup += rc.dup
		errs += uint64(rc.errors)
		lat = append(lat, rc.lat...)
	}
	res["delivered"], res["expected"], res["lost"], res["duplicated"], res["subscriber_errors"] =
		got, expected*uint64(len(rcs)), lost, dup, errs
	percentiles(res, "latency_", lat)
	return got
}

// fanout: S long-polls on one channel; each round publishes one message
// once all S wait, and waits until every subscriber has it.
func fanout(ctx context.Context, c *config, cl *client) (result, error) {
	ch := c.run + "-fan"
	subs, pubURL := subURLs(c, ch), fmt.Sprintf(c.pub, ch)
	res := result{"subs": c.subs, "rounds": c.rounds}
	arrived := make(chan struct{}, c.subs)
	rcs, wait := startReceivers(ctx, cl, subs, c.subs, uint64(c.rounds), func() { arrived <- struct{}{} })
	defer wait(true)
	before, measured := readSample(c.pids)
	start := time.Now()
	var roundTime time.Duration
	for r := range c.rounds {
		if err := cl.awaitSubscribers(ctx, pubURL, c.subs); err != nil {
			return res, fmt.Errorf("round %d: %w", r, err)
		}
		sent := time.Now()
		if status, err := cl.publish(ctx, pubURL, message(uint64(r), c.size)); err != nil || !published(status) {
			return res, fmt.Errorf("publish %d: %d %v", r, status, err)
		}
		for range c.subs {
			select {
			case <-arrived:
			case <-time.After(30 * time.Second):
				return res, fmt.Errorf("round %d: not every subscriber received the message in 30 s", r)
			}
		}
		roundTime += time.Since(sent)
	}
	after, _ := readSample(c.pids)
	wait(false) // every receiver has its `rounds` messages
	got := summarize(res, rcs, uint64(c.rounds))
	res["deliveries_per_s"] = float64(got) / roundTime.Seconds()
	res["wall_s"] = time.Since(start).Seconds()
	cpuPer(res, "server_cpu_us_per_delivery", before, after, measured, int(got))
	return res, nil
}

// publishLoad: P publishers on C channels for the duration.
func publishLoad(ctx context.Context, c *config, cl *client) (result, error) {
	res := result{"publishers": c.publishers, "channels": c.channels}
	var ok, failed atomic.Int64
	lats := make([][]time.Duration, c.publishers)
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	before, measured := readSample(c.pids)
	start := time.Now()
	var wg sync.WaitGroup
	for p := range c.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; ctx.Err() == nil; i += c.publishers {
				url := fmt.Sprintf(c.pub, fmt.Sprintf("%s-pub%d", c.run, i%c.channels))
				t := time.Now()
				status, err := cl.publish(ctx, url, message(uint64(i), c.size))
				switch {
				case ctx.Err() != nil:
				case err == nil && published(status):
					ok.Add(1)
					lats[p] = append(lats[p], time.Since(t))
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	after, _ := readSample(c.pids)
	var lat []time.Duration
	for _, l := range lats {
		lat = append(lat, l...)
	}
	res["publishes"], res["errors"] = ok.Load(), failed.Load()
	res["publishes_per_s"] = float64(ok.Load()) / elapsed.Seconds()
	percentiles(res, "latency_", lat)
	cpuPer(res, "server_cpu_us_per_publish", before, after, measured, int(ok.Load()))
	if measured {
		res["server_rss_mb_end"] = after.rss >> 20
	}
	return res, nil
}

// idle: S long-polls on S channels, held open; the server's memory per
// waiter is the growth of its RSS divided by S.
func idle(ctx context.Context, c *config, cl *client) (result, error) {
	res := result{"subs": c.subs}
	before, measured := readSample(c.pids)
	subCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range c.subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cur cursor
			urls := subURLs(c, fmt.Sprintf("%s-idle%d", c.run, i))
			if _, _, err := cl.poll(subCtx, urls[i%len(urls)], &cur); err != nil && subCtx.Err() == nil {
				failed.Add(1)
			}
		}()
	}
	for _, i := range []int{0, c.subs - 1} { // the first and last must be waiting
		if err := cl.awaitSubscribers(ctx, fmt.Sprintf(c.pub, fmt.Sprintf("%s-idle%d", c.run, i)), 1); err != nil {
			stop()
			wg.Wait()
			return res, err
		}
	}
	select {
	case <-time.After(c.hold):
	case <-ctx.Done():
	}
	with, _ := readSample(c.pids)
	stop()
	wg.Wait()
	res["errors"] = failed.Load()
	if measured {
		res["server_rss_mb_before"], res["server_rss_mb_with_waiters"] = before.rss>>20, with.rss>>20
		res["server_bytes_per_waiter"] = (with.rss - before.rss) / int64(c.subs)
	}
	if failed.Load() > 0 {
		return res, errors.New("some long-polls failed")
	}
	return res, nil
}

// stream: S subscribers re-poll one channel while a publisher publishes as
// fast as the slowest subscriber keeps up (at most -window ahead).
func stream(ctx context.Context, c *config, cl *client) (result, error) {
	ch := c.run + "-stream"
	subs, pubURL := subURLs(c, ch), fmt.Sprintf(c.pub, ch)
	res := result{"subs": c.subs, "window": c.window}
	rcs, wait := startReceivers(ctx, cl, subs, c.subs, 1<<62, nil) // until stopped after the drain
	defer wait(true)
	if err := cl.awaitSubscribers(ctx, pubURL, c.subs); err != nil {
		return res, err
	}
	before, measured := readSample(c.pids)
	start := time.Now()
	var n uint64
	for time.Since(start) < c.duration && ctx.Err() == nil {
		slowest := uint64(1 << 62)
		for _, rc := range rcs {
			slowest = min(slowest, rc.received.Load())
		}
		if n-slowest >= uint64(c.window) {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		if status, err := cl.publish(ctx, pubURL, message(n, c.size)); err != nil || !published(status) {
			return res, fmt.Errorf("publish %d: %d %v", n, status, err)
		}
		n++
	}
	drain := time.Now().Add(10 * time.Second)
	drained := false
	for time.Now().Before(drain) && !drained {
		drained = true
		for _, rc := range rcs {
			drained = drained && rc.received.Load() >= n
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	after, _ := readSample(c.pids)
	wait(true)
	got := summarize(res, rcs, n)
	res["published"], res["drained"] = n, drained
	res["deliveries_per_s"] = float64(got) / elapsed.Seconds()
	cpuPer(res, "server_cpu_us_per_delivery", before, after, measured, int(got))
	return res, nil
}
