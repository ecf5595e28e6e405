// Command pushbench is a load tool for any server that speaks the nginx push
// module's long-poll protocol (caddy-push, nginx push module, nchan). It
// speaks only HTTP to the server and reads the server's CPU time and memory
// from /proc when given its pid.
//
//	pushbench -scenario fanout -subs 1000 -rounds 50 -server-pid $(pgrep caddy)
//
// Several subscriber URLs (comma-separated) spread the subscribers over
// several servers, such as two Caddy instances sharing a Redis store; then
// -server-pid takes every process to measure (both Caddys and redis-server).
//
// Scenarios:
//
//	fanout   S long-polls on one channel, R publications; per round every
//	         subscriber must receive the message: latency, lost, duplicated
//	publish  P publishers on C channels for a duration: publications/s
//	idle     S long-polls on S channels held open: server memory per waiter
//	stream   S subscribers re-polling one channel while a publisher publishes
//	         as fast as the slowest keeps up (at most -window ahead)
//
// Every run is bounded by -max-time. The result is printed as one JSON line
// (also appended to -json-out).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"time"
)

type config struct {
	pub, sub   string
	scenario   string
	label      string
	subs       int
	rounds     int
	publishers int
	channels   int
	duration   time.Duration
	hold       time.Duration
	window     int
	size       int
	pids       []int // the server's processes (CPU and memory are summed)
	maxTime    time.Duration
	jsonOut    string
	run        string // channel name prefix, fresh per run
}

func main() {
	var c config
	flag.StringVar(&c.pub, "pub", "http://127.0.0.1:8080/publish?id=%s", "publisher URL (%s = channel id)")
	flag.StringVar(&c.sub, "sub", "http://127.0.0.1:8080/activity?id=%s",
		"subscriber URL (%s = channel id); several, comma-separated, share the subscribers round-robin")
	flag.StringVar(&c.scenario, "scenario", "fanout", "fanout | publish | idle | stream")
	flag.StringVar(&c.label, "label", "", "label copied into the result")
	flag.IntVar(&c.subs, "subs", 100, "subscribers (fanout, idle, stream)")
	flag.IntVar(&c.rounds, "rounds", 20, "fanout: publications")
	flag.IntVar(&c.publishers, "publishers", 16, "publish: concurrent publishers")
	flag.IntVar(&c.channels, "channels", 1, "publish: channels")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "publish, stream: measured time")
	flag.DurationVar(&c.hold, "hold", 2*time.Second, "idle: how long waiters are held before memory is read")
	flag.IntVar(&c.window, "window", 100, "stream: most messages the publisher may be ahead of the slowest subscriber")
	flag.IntVar(&c.size, "size", 100, "message body bytes (at least 24)")
	flag.Func("server-pid", "server pid for CPU and memory from /proc; several, comma-separated, are summed",
		func(v string) error { return parsePids(v, &c.pids) })
	flag.DurationVar(&c.maxTime, "max-time", 120*time.Second, "hard limit for the whole run")
	flag.StringVar(&c.jsonOut, "json-out", "", "append the JSON result to this file")
	flag.Parse()
	c.run = fmt.Sprintf("pb%d", rand.Uint32())
	if c.size < 24 {
		c.size = 24
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.maxTime)
	defer cancel()
	scenarios := map[string]func(context.Context, *config, *client) (result, error){
		"fanout": fanout, "publish": publishLoad, "idle": idle, "stream": stream,
	}
	run, ok := scenarios[c.scenario]
	if !ok {
		fmt.Fprintln(os.Stderr, "unknown -scenario", c.scenario)
		os.Exit(2)
	}
	res, err := run(ctx, &c, newClient(c.subs+c.publishers+16))
	if res == nil {
		res = result{}
	}
	res["scenario"], res["label"], res["time"] = c.scenario, c.label, time.Now().UTC().Format(time.RFC3339)
	if err != nil {
		res["error"] = err.Error()
	}
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	if c.jsonOut != "" {
		f, ferr := os.OpenFile(c.jsonOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if ferr == nil {
			_, _ = f.Write(append(line, '\n'))
			f.Close()
		}
	}
	if err != nil {
		os.Exit(1)
	}
}

// result is one run's figures, printed as JSON.
type result map[string]any

// newClient returns an HTTP/1.1 client that keeps up to conns connections.
func newClient(conns int) *client {
	return &client{&http.Client{Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true,
	}}}
}
