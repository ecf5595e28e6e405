package main

// The long-poll scenarios of the push protocol (the nchan reference
// figures were recorded with these):
//
//	fanout   S long-polls on one channel, R rounds; each round publishes once
//	         all S wait again, and waits until every one has the message
//	publish  P publishers on C channels for a duration
//	idle     S long-polls held open: server memory per waiter
//	stream   S subscribers re-polling one channel while a publisher keeps at
//	         most -window messages ahead of the slowest
//	proto    the protocol basics on a fresh channel (cursor, order, blocking)

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

func atomicMax(a *atomic.Int64, v int64) {
	for {
		o := a.Load()
		if v <= o || a.CompareAndSwap(o, v) {
			return
		}
	}
}

// ---------------------------------------------------------------- fanout

func runFanout(ctx context.Context, cfg *config, r *result) error {
	S, R := cfg.subs, cfg.rounds
	ch := cfg.runID + "-fan"
	pubURL := chanURL(cfg.pub, ch)
	r.set("subs", S)
	r.set("rounds", R)
	r.set("msg_size", cfg.msgSize)
	nc := cfg.factory
	client := nc()
	defer client.close()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()

	ready := make([]*countdown, R+2)
	got := make([]*countdown, R+2)
	lastRecv := make([]atomic.Int64, R+2)
	for i := range ready {
		ready[i], got[i] = newCountdown(S), newCountdown(S)
	}
	lat := make([][]int64, S)
	var dups, gaps, errs, non200, badBody atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < S; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client := nc()
			defer client.close()
			st := &subState{}
			expect := int64(1)
			counted := int64(0)
			for expect <= int64(R) && sctx.Err() == nil {
				e := expect
				pr, err := st.poll(sctx, client, subURLFor(cfg, i, ch), func() {
					if counted < e {
						counted = e
						ready[e].arrive()
					}
				})
				if err != nil {
					if sctx.Err() == nil {
						errs.Add(1)
						time.Sleep(20 * time.Millisecond)
					}
					continue
				}
				if pr.status != 200 {
					if !pollRetryable(pr.status) {
						non200.Add(1)
						time.Sleep(20 * time.Millisecond)
					}
					continue
				}
				seq, t, ok := parseBody(pr.body)
				if !ok {
					badBody.Add(1)
					continue
				}
				if seq < expect {
					dups.Add(1)
					continue
				}
				if seq > expect {
					gaps.Add(seq - expect)
				}
				lat[i] = append(lat[i], pr.recvT-t)
				if seq <= int64(R) {
					atomicMax(&lastRecv[seq], pr.recvT)
					got[seq].arrive()
				}
				expect = seq + 1
			}
		}(i)
	}

	var pubLat []int64
	var spanSum int64
	var cpu0 procSample
	var wall0 time.Time
	readyTimeouts, roundTimeouts, pubErrs := 0, 0, 0
	infoSupported, infoTimeouts := cfg.useInfo, 0
	var firstReady time.Duration
	for rd := 1; rd <= R && ctx.Err() == nil; rd++ {
		ws := time.Now()
		if !waitDone(ctx, ready[rd].done, cfg.waitTO) {
			readyTimeouts++
		}
		if infoSupported {
			conf, sup := waitServerSubs(ctx, client, pubURL, S, cfg.waitTO)
			if !sup {
				infoSupported = false
			} else if !conf {
				infoTimeouts++
			}
		}
		time.Sleep(cfg.settle)
		if rd == 1 {
			firstReady = time.Since(ws)
			cpu0 = sampleServer(cfg.pids, cfg.children)
			wall0 = time.Now()
		}
		t := mono()
		st, err := publishPush(ctx, client, pubURL, makeBody(int64(rd), t, cfg.msgSize))
		pubLat = append(pubLat, mono()-t)
		if err != nil || !publishOK(st) {
			pubErrs++
		}
		if !waitDone(ctx, got[rd].done, cfg.waitTO) {
			roundTimeouts++
		}
		if lr := lastRecv[rd].Load(); lr > t {
			spanSum += lr - t
		}
	}
	wall := time.Since(wall0)
	cpu1 := sampleServer(cfg.pids, cfg.children)
	scancel()
	wg.Wait()

	var all []int64
	for _, l := range lat {
		all = append(all, l...)
	}
	delivered := int64(len(all))
	expected := int64(S) * int64(R)
	p50, p99, mx := pctMs(all)
	r.set("delivered", delivered)
	r.set("expected", expected)
	r.set("lost", expected-delivered)
	r.set("gaps_seen", gaps.Load())
	r.set("duplicated", dups.Load())
	r.set("lat_p50_ms", p50)
	r.set("lat_p99_ms", p99)
	r.set("lat_max_ms", mx)
	r.set("deliveries_per_s", float64(delivered)/(float64(spanSum)/1e9))
	r.set("wall_s", wall.Seconds())
	r.set("deliveries_per_s_wall", float64(delivered)/wall.Seconds())
	pp50, _, _ := pctMs(pubLat)
	r.set("publish_p50_ms", pp50)
	r.set("first_subscribe_s", firstReady.Seconds())
	r.set("ready_timeouts", readyTimeouts)
	r.set("round_timeouts", roundTimeouts)
	r.set("info_used", infoSupported)
	r.set("info_timeouts", infoTimeouts)
	r.set("publish_errors", pubErrs)
	r.set("sub_errors", errs.Load())
	r.set("sub_non200", non200.Load())
	r.set("bad_bodies", badBody.Load())
	r.addServer(cpu0, cpu1, delivered, "delivery")
	r.set("client_cpu_s", selfCPU())
	return nil
}

// ---------------------------------------------------------------- publish

func runPublish(ctx context.Context, cfg *config, r *result) error {
	P, C := cfg.publishers, cfg.channels
	r.set("publishers", P)
	r.set("channels", C)
	r.set("duration_s", cfg.duration.Seconds())
	r.set("msg_size", cfg.msgSize)
	urls := make([]string, C)
	for i := range urls {
		urls[i] = chanURL(cfg.pub, fmt.Sprintf("%s-pub%d", cfg.runID, i))
	}
	before := sampleServer(cfg.pids, cfg.children)
	r.set("server_rss_kb_start", before.rssKB)
	r.set("server_pss_kb_start", before.pssKB)

	var stop atomic.Bool
	var seq atomic.Int64
	lats := make([][]int64, P)
	errs := make([]int64, P)
	codes := make([]map[int]int64, P)
	var wg, opened, finished sync.WaitGroup
	begin, release := make(chan struct{}), make(chan struct{})
	var cpu0 procSample
	var start time.Time
	for w := 0; w < P; w++ {
		wg.Add(1)
		opened.Add(1)
		finished.Add(1)
		go func(w int) {
			defer wg.Done()
			client := cfg.factory()
			defer client.close()
			sockets := &wsPublisher{dial: cfg.dial}
			defer sockets.close()
			codes[w] = map[int]int64{}
			// a publisher's sockets are opened before the measured window
			// (a socket per channel: 2000 upgrades at 16 x 1000)
			if cfg.transport == "websocket" {
				for k := 0; k < C; k++ {
					if u := urls[(w+k*P)%C]; sockets.sockets[u].c == nil {
						if err := sockets.open(ctx, u); err != nil {
							errs[w]++
						}
					}
				}
			}
			opened.Done()
			<-begin
			for k := 0; !stop.Load() && ctx.Err() == nil; k++ {
				u := urls[(w+k*P)%C]
				t := mono()
				var st int
				var err error
				if cfg.transport == "websocket" {
					st, err = sockets.publish(ctx, u, makeBody(seq.Add(1), t, cfg.msgSize))
				} else {
					st, err = publishPush(ctx, client, u, makeBody(seq.Add(1), t, cfg.msgSize))
				}
				d := mono() - t
				if err != nil {
					errs[w]++
					time.Sleep(10 * time.Millisecond)
					continue
				}
				codes[w][st]++
				if publishOK(st) {
					lats[w] = append(lats[w], d)
				}
			}
			// the sockets are closed after the window too
			finished.Done()
			<-release
		}(w)
	}
	opened.Wait()
	cpu0 = sampleServer(cfg.pids, cfg.children)
	start = time.Now()
	timer := time.AfterFunc(cfg.duration, func() { stop.Store(true) })
	defer timer.Stop()
	close(begin)
	finished.Wait()
	el := time.Since(start)
	cpu1 := sampleServer(cfg.pids, cfg.children)
	close(release)
	wg.Wait()
	var all []int64
	var nerr int64
	cm := map[string]int64{}
	for w := 0; w < P; w++ {
		all = append(all, lats[w]...)
		nerr += errs[w]
		for c, n := range codes[w] {
			cm[fmt.Sprint(c)] += n
		}
	}
	ok := int64(len(all))
	p50, p99, mx := pctMs(all)
	r.set("publishes_ok", ok)
	r.set("publish_errors", nerr)
	r.set("status_counts", cm)
	r.set("publishes_per_s", float64(ok)/el.Seconds())
	r.set("lat_p50_ms", p50)
	r.set("lat_p99_ms", p99)
	r.set("lat_max_ms", mx)
	r.addServer(cpu0, cpu1, ok, "publish")
	r.set("client_cpu_s", selfCPU())
	return nil
}

// ---------------------------------------------------------------- idle

func runIdle(ctx context.Context, cfg *config, r *result) error {
	N := cfg.subs
	r.set("subs", N)
	r.set("shared_channel", cfg.idleShared)
	idleCh := func(i int) string {
		if cfg.idleShared {
			return cfg.runID + "-idle"
		}
		return fmt.Sprintf("%s-idle%d", cfg.runID, i)
	}
	client := cfg.factory()
	defer client.close()
	time.Sleep(200 * time.Millisecond)
	before := sampleServer(cfg.pids, cfg.children)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	written := newCountdown(N)
	var errs, early atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < N; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client := cfg.factory()
			defer client.close()
			st := &subState{}
			once := false
			pr, err := st.poll(sctx, client, subURLFor(cfg, i, idleCh(i)), func() {
				if !once {
					once = true
					written.arrive()
				}
			})
			if err != nil {
				if sctx.Err() == nil {
					errs.Add(1)
				}
				return
			}
			_ = pr
			early.Add(1) // a reply before we hung up: subscriber was not idle
		}(i)
	}
	allWritten := waitDone(ctx, written.done, cfg.waitTO)
	openTime := time.Since(start)
	// confirm on a few channels that the server sees the subscriber
	confirmed, checked := 0, 0
	if cfg.useInfo {
		want := 1
		if cfg.idleShared {
			want = N
		}
		for _, i := range []int{0, N / 3, N / 2, N - 1} {
			if i < 0 {
				continue
			}
			checked++
			if c, _ := waitServerSubs(ctx, client, chanURL(cfg.pub, idleCh(i)), want, 5*time.Second); c {
				confirmed++
			}
		}
	}
	time.Sleep(cfg.hold)
	after := sampleServer(cfg.pids, cfg.children)
	scancel()
	wg.Wait()
	client.close()
	time.Sleep(1500 * time.Millisecond)
	closed := sampleServer(cfg.pids, cfg.children)

	r.set("all_written", allWritten)
	r.set("open_s", openTime.Seconds())
	r.set("info_confirmed", fmt.Sprintf("%d/%d", confirmed, checked))
	r.set("sub_errors", errs.Load())
	r.set("early_replies", early.Load())
	if before.ok {
		r.set("server_pids", len(after.pids))
		r.set("server_rss_kb_before", before.rssKB)
		r.set("server_rss_kb_with_subs", after.rssKB)
		r.set("server_rss_kb_after_close", closed.rssKB)
		r.set("server_pss_kb_before", before.pssKB)
		r.set("server_pss_kb_with_subs", after.pssKB)
		r.set("server_pss_kb_after_close", closed.pssKB)
		r.set("rss_bytes_per_sub", float64(after.rssKB-before.rssKB)*1024/float64(N))
		r.set("pss_bytes_per_sub", float64(after.pssKB-before.pssKB)*1024/float64(N))
		r.set("server_cpu_s_open_close", closed.cpuSec-before.cpuSec)
	}
	r.set("client_cpu_s", selfCPU())
	return nil
}

// ---------------------------------------------------------------- stream

func runStream(ctx context.Context, cfg *config, r *result) error {
	S := cfg.subs
	ch := cfg.runID + "-stream"
	pubURL := chanURL(cfg.pub, ch)
	r.set("subs", S)
	r.set("duration_s", cfg.duration.Seconds())
	r.set("window", cfg.window)
	r.set("msg_size", cfg.msgSize)
	client := cfg.factory()
	defer client.close()
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()

	ready := newCountdown(S)
	last := make([]atomic.Int64, S)
	uniq := make([]int64, S)
	lat := make([][]int64, S)
	notify := make(chan struct{}, 1)
	var final atomic.Int64
	final.Store(math.MaxInt64)
	finished := newCountdown(S)
	var dups, gaps, errs, non200, badBody, polls atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < S; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			client := cfg.factory()
			defer client.close()
			st := &subState{}
			expect := int64(1)
			first := true
			for sctx.Err() == nil && expect <= final.Load() {
				pr, err := st.poll(sctx, client, subURLFor(cfg, i, ch), func() {
					if first {
						first = false
						ready.arrive()
					}
				})
				polls.Add(1)
				if err != nil {
					if sctx.Err() == nil {
						errs.Add(1)
						time.Sleep(20 * time.Millisecond)
					}
					continue
				}
				if pr.status != 200 {
					if !pollRetryable(pr.status) {
						non200.Add(1)
						time.Sleep(20 * time.Millisecond)
					}
					continue
				}
				seq, t, ok := parseBody(pr.body)
				if !ok {
					badBody.Add(1)
					continue
				}
				if seq < expect {
					dups.Add(1)
					continue
				}
				if seq > expect {
					gaps.Add(seq - expect)
				}
				uniq[i]++
				lat[i] = append(lat[i], pr.recvT-t)
				expect = seq + 1
				last[i].Store(seq)
				select {
				case notify <- struct{}{}:
				default:
				}
				if seq == final.Load() {
					finished.arrive()
				}
			}
		}(i)
	}
	readyOK := waitDone(ctx, ready.done, cfg.waitTO)
	infoOK := false
	if cfg.useInfo {
		infoOK, _ = waitServerSubs(ctx, client, pubURL, S, cfg.waitTO)
	}
	time.Sleep(cfg.settle)

	minLast := func() int64 {
		m := int64(math.MaxInt64)
		for i := range last {
			if v := last[i].Load(); v < m {
				m = v
			}
		}
		return m
	}
	cpu0 := sampleServer(cfg.pids, cfg.children)
	start := time.Now()
	stopAt := start.Add(cfg.duration)
	var seq int64
	var pubLat []int64
	pubErrs, stalls := 0, 0
	for time.Now().Before(stopAt) && ctx.Err() == nil {
		if seq-minLast() >= int64(cfg.window) {
			stalls++
			select {
			case <-notify:
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		t := mono()
		st, err := publishPush(ctx, client, pubURL, makeBody(seq+1, t, cfg.msgSize))
		pubLat = append(pubLat, mono()-t)
		if err != nil || !publishOK(st) {
			pubErrs++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		seq++
	}
	pubEnd := time.Since(start)
	final.Store(seq)
	// subscribers that already got the last message before final was known
	for i := range last {
		if last[i].Load() == seq && seq > 0 {
			finished.arrive()
		}
	}
	drained := waitDone(ctx, finished.done, cfg.waitTO)
	el := time.Since(start)
	cpu1 := sampleServer(cfg.pids, cfg.children)
	scancel()
	wg.Wait()

	var all []int64
	var delivered, lost int64
	for i := 0; i < S; i++ {
		all = append(all, lat[i]...)
		delivered += uniq[i]
		lost += seq - uniq[i]
	}
	p50, p99, mx := pctMs(all)
	r.set("ready", readyOK)
	r.set("info_confirmed", infoOK)
	r.set("published", seq)
	r.set("publishes_per_s", float64(seq)/pubEnd.Seconds())
	r.set("delivered", delivered)
	r.set("deliveries_per_s", float64(delivered)/el.Seconds())
	r.set("elapsed_s", el.Seconds())
	r.set("lost", lost)
	r.set("gaps_seen", gaps.Load())
	r.set("duplicated", dups.Load())
	r.set("drained", drained)
	r.set("lat_p50_ms", p50)
	r.set("lat_p99_ms", p99)
	r.set("lat_max_ms", mx)
	pp50, pp99, _ := pctMs(pubLat)
	r.set("publish_p50_ms", pp50)
	r.set("publish_p99_ms", pp99)
	r.set("publisher_window_stalls", stalls)
	r.set("polls", polls.Load())
	r.set("publish_errors", pubErrs)
	r.set("sub_errors", errs.Load())
	r.set("sub_non200", non200.Load())
	r.set("bad_bodies", badBody.Load())
	r.addServer(cpu0, cpu1, delivered, "delivery")
	r.set("client_cpu_s", selfCPU())
	return nil
}

// ---------------------------------------------------------------- proto

// runProto checks the push protocol basics on a fresh channel: three messages
// published back to back (normally inside one second, so Last-Modified is
// equal and only Etag differs) must come out one per poll, in order, via
// If-Modified-Since/If-None-Match; a poll past the last message must block
// until the next publish.
func runProto(ctx context.Context, cfg *config, r *result) error {
	ch := cfg.runID + "-proto"
	subURL, pubURL := subURLFor(cfg, 0, ch), chanURL(cfg.pub, ch)
	client := cfg.factory()
	defer client.close()
	sclient := cfg.factory()
	defer sclient.close()
	var statuses []int
	for i := 1; i <= 3; i++ {
		st, err := publishPush(ctx, client, pubURL, makeBody(int64(i), mono(), cfg.msgSize))
		if err != nil {
			return err
		}
		statuses = append(statuses, st)
	}
	r.set("publish_statuses", statuses)
	st := &subState{}
	var seqs []int64
	var tags []string
	pass := true
	for i := 1; i <= 3; i++ {
		c, cancel := context.WithTimeout(ctx, 3*time.Second)
		pr, err := st.poll(c, sclient, subURL, nil)
		cancel()
		if err != nil || pr.status != 200 {
			pass = false
			r.set(fmt.Sprintf("poll%d_error", i), fmt.Sprint(pr.status, " ", err))
			break
		}
		s, _, _ := parseBody(pr.body)
		seqs = append(seqs, s)
		tags = append(tags, pr.lastMod+" | "+pr.etag)
		if s != int64(i) {
			pass = false
		}
	}
	r.set("seqs", seqs)
	r.set("last_modified_etag", tags)
	// a poll past the newest message must wait
	type res struct {
		pr  response
		err error
		at  time.Duration
	}
	done := make(chan res, 1)
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ts := time.Now()
	go func() {
		pr, err := st.poll(c, sclient, subURL, nil)
		done <- res{pr, err, time.Since(ts)}
	}()
	select {
	case x := <-done:
		pass = false
		r.set("blocking_poll", fmt.Sprintf("returned early: %d %v after %v", x.pr.status, x.err, x.at))
	case <-time.After(700 * time.Millisecond):
		publishPush(ctx, client, pubURL, makeBody(4, mono(), cfg.msgSize))
		x := <-done
		s, _, _ := parseBody(x.pr.body)
		r.set("blocking_poll", fmt.Sprintf("status %d seq %d after %v", x.pr.status, s, x.at.Round(time.Millisecond)))
		if x.err != nil || x.pr.status != 200 || s != 4 {
			pass = false
		}
	}
	r.set("pass", pass)
	if !pass {
		return errors.New("protocol check failed")
	}
	return nil
}
