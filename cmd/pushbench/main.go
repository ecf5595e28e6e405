// Command pushbench is the project's load tool. It speaks, over loopback
// HTTP only, the nginx push module's protocol (caddy-push, nchan) with
// long-poll, EventSource and WebSocket subscribers, and Centrifugo's
// unidirectional protocol (uni_sse, uni_websocket, HTTP API publish). It
// reads the server's CPU time and memory from /proc (-server-pid, summed
// over the pids and their descendants) and prints one JSON line per run
// (also appended to -json-out); bench/summary.py turns those into tables.
//
// Scenarios (see longpoll.go and streams.go):
//
//	fanout   S subscribers on one channel, R rounds (any -transport)
//	rate     S subscribers on one channel, -rate deliveries/s offered for
//	         -duration (any -transport)
//	idle     S idle subscribers: server memory per subscriber (any -transport)
//	publish  P publishers on C channels (push protocol: POST, or with
//	         -transport websocket frames to the publisher's WebSocket)
//	stream   S long-polls re-polling as fast as a windowed publisher goes
//	proto    a check of the long-poll protocol basics
//	probe    one subscriber, one message: exit 0 if it arrives
//
// Examples:
//
//	pushbench -scenario fanout -subs 1000 -rounds 50 \
//	    -pub 'http://127.0.0.1:18090/pub?id=%s' -sub 'http://127.0.0.1:18090/sub?id=%s' -server-pid PID
//	pushbench -scenario rate -transport eventsource -subs 1000 -rate 20000 -duration 15s \
//	    -pub 'http://127.0.0.1:18402/pub?id=%s' -sub 'http://127.0.0.1:18402/sub_stream?id=%s' -server-pid PID
//	pushbench -server centrifugo -transport websocket -scenario rate -subs 1000 -rate 20000 \
//	    -pub http://127.0.0.1:18403/api/publish -api-key KEY \
//	    -sub http://127.0.0.1:18403/connection/uni_websocket -server-pid PID
//
// Several -sub URLs, comma-separated, spread the subscribers over several
// servers (two Caddys sharing a Redis store; give -server-pid every
// process). Several subscriber processes are not needed: one pushbench holds 10,000
// streams (raise the open-files limit first). Every run is bounded by
// -max-time and every wait by -wait-timeout.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"time"
)

type config struct {
	scenario      string
	label         string
	server        string // push | centrifugo
	transport     string // longpoll | eventsource | websocket
	pub, sub      string
	apiKey        string
	wsMeta        bool
	pubWebSocket  bool // publish over a WebSocket to -pub (fanout, rate, stream, slow)
	pids          []int
	children      bool
	runID         string
	subs          int
	rounds        int
	publishers    int
	channels      int
	rate          float64
	duration      time.Duration
	drain         time.Duration
	settle        time.Duration
	hold          time.Duration
	msgSize       int
	total         int64
	slowSubs      int
	window        int
	useInfo       bool
	waitTO        time.Duration
	maxTime       time.Duration
	maxDials      int
	maxReconnects int
	jsonOut       string
	client        string
	idleShared    bool

	dial           dialFunc
	factory        connFactory
	newSub         newSubFunc
	publish        publisher
	closePublisher func() // closes what publish keeps open
}

func main() {
	var cfg config
	var pidStr string
	flag.StringVar(&cfg.scenario, "scenario", "fanout", "fanout | rate | idle | slow | publish | stream | catchup | proto | probe")
	flag.StringVar(&cfg.label, "label", "", "label copied into the result; the bench scripts use WHO-REP (nchan-r1)")
	flag.StringVar(&cfg.server, "server", "push", "protocol: push (caddy-push, nchan) | centrifugo")
	flag.StringVar(&cfg.transport, "transport", "longpoll", "subscriber transport: longpoll | eventsource | websocket (publish: POST, or websocket frames)")
	flag.StringVar(&cfg.pub, "pub", "http://127.0.0.1:18082/pub?id=%s", "publisher URL (%s = channel id); centrifugo: the HTTP API publish URL")
	flag.StringVar(&cfg.sub, "sub", "http://127.0.0.1:18082/sub?id=%s",
		"subscriber URL (%s = channel id); several, comma-separated, share the subscribers round-robin; centrifugo: the uni_sse or uni_websocket endpoint")
	flag.StringVar(&cfg.apiKey, "api-key", "", "centrifugo: HTTP API key (X-API-Key)")
	flag.BoolVar(&cfg.wsMeta, "ws-meta", false, "push websocket: ask for the ws+meta.nchan subprotocol")
	flag.BoolVar(&cfg.pubWebSocket, "pub-websocket", false,
		"push: publish as frames on a WebSocket to -pub, one per channel (fanout, rate, stream, slow; -scenario publish: -transport websocket)")
	flag.StringVar(&pidStr, "server-pid", "", "server pid(s), comma separated; CPU/RSS summed (plus descendants, see -children)")
	flag.BoolVar(&cfg.children, "children", true, "include descendants of -server-pid (e.g. nginx workers)")
	flag.StringVar(&cfg.runID, "run-id", "", "channel name prefix (default: random, so every run uses fresh channels)")
	flag.IntVar(&cfg.subs, "subs", 100, "subscribers (fanout, rate, idle, stream; catchup: per channel, one after another)")
	flag.IntVar(&cfg.rounds, "rounds", 20, "fanout: messages (rounds); catchup: messages per channel")
	flag.IntVar(&cfg.publishers, "publishers", 16, "publish: concurrent publishers")
	flag.IntVar(&cfg.channels, "channels", 1, "publish, catchup: channels")
	flag.Float64Var(&cfg.rate, "rate", 20000, "rate: deliveries/s offered (publications/s x subscribers)")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "publish, stream, rate: measured duration")
	flag.DurationVar(&cfg.drain, "drain", 10*time.Second, "rate: longest wait for the last deliveries after the last publication")
	flag.DurationVar(&cfg.settle, "settle", 20*time.Millisecond, "extra wait after subscribers are detected waiting")
	flag.BoolVar(&cfg.idleShared, "idle-shared", false, "idle: put all subscribers on ONE channel (default: one channel each)")
	flag.DurationVar(&cfg.hold, "hold", 3*time.Second, "idle: time to hold subscribers open before sampling memory")
	flag.IntVar(&cfg.msgSize, "msg-size", 100, "message body size in bytes")
	flag.Int64Var(&cfg.total, "total", 100<<20, "slow: bytes published (in -msg-size messages)")
	flag.IntVar(&cfg.slowSubs, "slow-subs", 1, "slow: subscribers that never read")
	flag.IntVar(&cfg.window, "window", 200, "stream: max messages the publisher may run ahead of the slowest subscriber (keep < server buffer)")
	flag.BoolVar(&cfg.useInfo, "info", true, "push: poll channel info (GET on the publisher URL) to confirm subscribers are waiting")
	flag.DurationVar(&cfg.waitTO, "wait-timeout", 60*time.Second, "max wait for subscribers to be ready / a round to be delivered")
	flag.DurationVar(&cfg.maxTime, "max-time", 180*time.Second, "hard limit for the whole run")
	flag.IntVar(&cfg.maxDials, "max-dials", 256, "max concurrent TCP connects")
	flag.IntVar(&cfg.maxReconnects, "max-reconnects", 3, "streams: reconnects allowed per subscriber (each is counted)")
	flag.StringVar(&cfg.jsonOut, "json-out", "", "append the JSON result line to this file")
	flag.StringVar(&cfg.client, "client", "raw", "HTTP client for requests: raw (lean HTTP/1.1) | nethttp (Go net/http)")
	flag.Parse()
	cfg.pids = parsePids(pidStr)
	if err := setup(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pushbench:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxTime)
	defer cancel()
	r, err := run(ctx, &cfg)
	if ctx.Err() != nil {
		r.set("aborted", "max-time reached")
	}
	if err != nil {
		r.set("error", err.Error())
	}
	r.emit(cfg.jsonOut)
	if err != nil || ctx.Err() != nil {
		os.Exit(1)
	}
}

// scenarios maps -scenario to its run function, by transport class.
var scenarios = map[string]struct {
	longpoll, streams func(context.Context, *config, *result) error
}{
	"fanout":  {runFanout, runStreamFanout},
	"rate":    {runRate, runRate},
	"idle":    {runIdle, runStreamIdle},
	"probe":   {runProbe, runProbe},
	"slow":    {nil, runStreamSlow},
	"publish": {runPublish, runPublish}, // -transport websocket: frames to a publisher's WebSocket
	"stream":  {runStream, nil},
	"catchup": {runCatchup, nil},
	"proto":   {runProto, nil},
}

// setup checks the flags and builds the clients.
func setup(cfg *config) error {
	sc, ok := scenarios[cfg.scenario]
	if !ok {
		return fmt.Errorf("unknown -scenario %q", cfg.scenario)
	}
	switch cfg.server {
	case "push":
		if strings.Count(cfg.pub, "%s") != 1 {
			return fmt.Errorf("-pub must contain exactly one %%s")
		}
		for _, t := range strings.Split(cfg.sub, ",") {
			if strings.Count(t, "%s") != 1 {
				return fmt.Errorf("each -sub URL must contain exactly one %%s")
			}
		}
	case "centrifugo":
		if cfg.transport == "longpoll" {
			return fmt.Errorf("-server centrifugo needs -transport eventsource or websocket")
		}
	default:
		return fmt.Errorf("unknown -server %q (push | centrifugo)", cfg.server)
	}
	if cfg.transport != "longpoll" && sc.streams == nil {
		return fmt.Errorf("-scenario %s is long-poll only", cfg.scenario)
	}
	if cfg.scenario == "publish" && cfg.transport == "eventsource" {
		return fmt.Errorf("-scenario publish publishes with POST (-transport longpoll) or over a WebSocket (websocket)")
	}
	if cfg.pubWebSocket && (cfg.server != "push" || cfg.scenario == "publish") {
		return fmt.Errorf("-pub-websocket is for the push protocol's fanout, rate, stream and slow scenarios " +
			"(-scenario publish publishes over a WebSocket with -transport websocket)")
	}
	if cfg.transport == "longpoll" && sc.longpoll == nil {
		return fmt.Errorf("-scenario %s needs -transport eventsource or websocket", cfg.scenario)
	}
	cfg.dial = newDialer(cfg.maxDials)
	f, err := makeFactory(cfg.client, cfg.dial)
	if err != nil {
		return err
	}
	cfg.factory = f
	if cfg.newSub, err = newSubscriber(cfg); err != nil {
		return err
	}
	cfg.publish, cfg.closePublisher = newPublisher(cfg)
	if cfg.runID == "" {
		cfg.runID = fmt.Sprintf("pb%d%04d", time.Now().Unix()%100000, rand.Intn(10000))
	}
	return nil
}

// run runs the configured scenario into a result with its header.
func run(ctx context.Context, cfg *config) (*result, error) {
	r := newResult()
	r.set("scenario", cfg.scenario)
	r.set("label", cfg.label)
	r.set("time", time.Now().UTC().Format(time.RFC3339))
	r.set("run_id", cfg.runID)
	r.set("server", cfg.server)
	r.set("transport", cfg.transport)
	if cfg.pubWebSocket {
		r.set("publisher", "websocket")
	}
	r.set("msg_size", cfg.msgSize)
	defer cfg.closePublisher()
	sc := scenarios[cfg.scenario]
	fn := sc.streams
	if cfg.transport == "longpoll" && cfg.server == "push" {
		fn = sc.longpoll
	}
	return r, fn(ctx, cfg, r)
}
