package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the Redis store's side of pub/sub: the listener that
// wakes this process's waiters, and the recheck that catches up with what
// a broken subscription missed.

// parseNote reads a notification (see redisscripts.go); ok is false for a
// malformed one.
func parseNote(p string) (n note, ok bool) {
	if len(p) < 2 {
		return n, false
	}
	n.kind, p = p[0], p[1:]
	gen, p, _ := strings.Cut(p, " ")
	var id string
	if n.kind == 'm' {
		id, p, _ = strings.Cut(p, " ")
	}
	klen, p, _ := strings.Cut(p, " ")
	kl, err := strconv.Atoi(klen)
	if err != nil || kl < 0 || kl > len(p) {
		return n, false
	}
	n.key, p = p[:kl], p[kl:]
	if n.gen, err = strconv.ParseInt(gen, 10, 64); err != nil {
		return n, false
	}
	switch n.kind {
	case 'm':
		n.id, n.payload = id, p
	case 'd', 'x':
	default:
		return n, false
	}
	return n, true
}

// How the listener tells a quiet notes connection from a dead one: after
// notesQuiet without a notification it sends a PING, and a connection
// whose PONG (or anything else) does not come within pongWait is broken
// (a Redis host gone without a reset, a partition, a middlebox that
// dropped the flow): go-redis reconnects it. Tests shorten both.
var notesQuiet, pongWait = 15 * time.Second, 5 * time.Second

// listen receives notifications until the store is destroyed. When the
// subscription breaks, or goes silent, it reconnects with backoff; each
// confirmed (re)subscription rechecks the parked waiters, so none stays
// deaf to what was published while it was not listening.
func (s *Store) listen() {
	defer close(s.listenDone)
	backoff := 50 * time.Millisecond
	pinged := false
	for {
		msg, err := s.receive(pinged)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if !pinged && errors.As(err, &ne) && ne.Timeout() {
				if err = s.pubsub.Ping(s.ctx); err == nil {
					pinged = true // a quiet connection: alive if the PONG comes
					continue
				}
			}
			pinged = false
			s.subscribed.Store(false)
			s.notesBroken(err)
			select {
			case <-time.After(backoff):
			case <-s.ctx.Done():
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			var reply redis.Error
			if errors.As(err, &reply) {
				// Redis answered with an error (a SUBSCRIBE refused with
				// BUSY, NOPERM, ...): go-redis keeps such a connection and
				// sends nothing again, so the subscription is asked for
				// again here (a connection still subscribed confirms it
				// once more, and its waiters are rechecked).
				_ = s.pubsub.Subscribe(s.ctx, s.notes)
			}
			continue
		}
		pinged = false // anything received, the PONG included, shows it alive
		switch m := msg.(type) {
		case *redis.Message:
			if n, ok := parseNote(m.Payload); ok {
				if n.kind == 'm' {
					s.remember(n.key, parseID(n.id))
				}
				s.deliver(n)
			}
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				// Availability is judged by commands (the pool may still
				// refuse for a moment); the recheck's commands mark it.
				backoff = 50 * time.Millisecond
				s.resubscribed()
			}
		}
	}
}

// notesBroken reports the notes connection's failure: as Redis's own
// (s.fail: "redis unavailable") when Redis does not answer a PING on the
// command connections either, or else once as the notifications' alone (a
// pub/sub connection that Redis's client-output-buffer-limit, a CLIENT
// KILL or a proxy cut), whose subscribers here hear nothing until the
// subscription is made again, while publications are answered as usual.
func (s *Store) notesBroken(err error) {
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	perr := s.client.Ping(ctx).Err()
	cancel()
	if perr != nil {
		_ = s.fail(err)
		return
	}
	if s.notesDown.CompareAndSwap(false, true) {
		s.logger.Warn("redis notifications interrupted; subscribing again", zap.Error(err))
	}
}

// receive waits for the next notification, for at most notesQuiet, or
// once a PING is sent, for pongWait: a read that times out then is the
// connection's failure, which makes go-redis close it and subscribe again
// on a new one (a timeout within ReceiveTimeout's own time is not).
func (s *Store) receive(pinged bool) (any, error) {
	if !pinged {
		return s.pubsub.ReceiveTimeout(s.ctx, notesQuiet)
	}
	ctx, cancel := context.WithTimeout(s.ctx, pongWait)
	defer cancel()
	return s.pubsub.ReceiveTimeout(ctx, 0)
}

// resubscribed records a confirmed notes subscription, loads the scripts
// (a restarted Redis has lost them) and then rechecks every parked
// subscription in Redis. Subscriptions still pending recheck themselves
// when they settle (their epoch is now old).
func (s *Store) resubscribed() {
	first := s.epoch.Load() == 0
	s.epoch.Add(1)
	s.subscribed.Store(true)
	s.notesDown.Store(false)
	var parked []recheck
	s.mu.Lock()
	for _, lc := range s.local {
		lc.subs.Each(func(m *member) {
			if !m.pending && !m.rechecking {
				s.setRechecking(m, true)
				parked = append(parked, recheck{m: m})
			}
		})
	}
	s.mu.Unlock()
	if len(parked) > 0 && !first {
		s.logger.Info("redis notifications resumed; rechecking parked subscribers", zap.Int("waiters", len(parked)))
	}
	go func() {
		s.loadScripts()
		if len(parked) > 0 {
			s.recheck(parked)
		}
	}()
}

// loadScripts loads every script into Redis (every master of a Cluster),
// so that the first calls after a start or a Redis restart do not each
// miss with NOSCRIPT and send the whole script text again. It is best
// effort: a script that is missing anyway is sent with its call.
func (s *Store) loadScripts() {
	for _, sc := range scripts {
		ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
		err := sc.Load(ctx, s.client).Err()
		cancel()
		if err != nil {
			if c := s.logger.Check(zapcore.DebugLevel, "loading redis scripts"); c != nil {
				c.Write(zap.Error(err))
			}
			return
		}
	}
}

// recheck is a member to look up again in Redis, with the notification
// that showed it missed one, if one did.
type recheck struct {
	m      *member
	missed *note
	retry  time.Duration // how long after this one fails to try again (0: recheckRetry)
}

// A recheck that fails (Redis not answering scripts yet, or a dead pooled
// connection) is tried again after recheckRetry, then twice as long each
// time up to maxRecheckRetry, while its member stays registered: on a
// quiet channel no notification would show the member what it missed.
// Tests shorten the first.
var recheckRetry, maxRecheckRetry = time.Second, 30 * time.Second

// recheck looks up again in Redis, for each member still registered, what
// it may have missed. A stream is sent every stored message after its
// cursor and takes the channel's gen (see catchUp). A long-poll is sent
// the first stored message after its cursor; when there is none, one that
// missed a notification gets the message of the one it received next (what
// it missed was not stored, or is gone), or 304 if that was no message;
// one rechecked after a resubscription stays parked if its channel is
// unchanged, and gets 304 (Retry) if the channel changed in a way no
// longer visible (deleted, or a broadcast with store_messages off), so the
// client asks again. A member whose recheck fails (Redis down again) stays
// parked, open to notifications, and is rechecked again later
// (retryRechecks), or sooner by a notification that shows a gap.
func (s *Store) recheck(list []recheck) {
	type parked struct {
		recheck
		key    string
		cursor string
		gen    int64
		regGen int64
	}
	var all []parked
	s.mu.Lock()
	// A resubscription while these calls are in Redis leaves their members
	// alone (they are being rechecked), though what they read may predate
	// a publication the broken subscription missed: each is looked up
	// again if the epoch moved (see endRecheckLocked).
	epoch := s.epoch.Load()
	for _, r := range list {
		if r.m.Listed() && !r.m.pending {
			all = append(all, parked{r, r.m.key, r.m.cursor, r.m.gen, r.m.regGen})
		} else {
			s.setRechecking(r.m, false)
		}
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	var failedMu sync.Mutex
	var failed []recheck
	fail := func(r recheck) {
		failedMu.Lock()
		failed = append(failed, r)
		failedMu.Unlock()
	}
	work := make(chan parked)
	for range min(16, len(all)) {
		wg.Go(func() {
			for p := range work {
				ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
				if p.m.stream {
					if !s.catchUp(ctx, p.m, p.cursor, p.regGen, p.missed, epoch) {
						fail(p.recheck)
					}
					cancel()
					continue
				}
				res, err := s.run(ctx, scriptRecheck, p.key, p.cursor, p.gen, s.instance)
				cancel()
				if h := testHookRechecked.Load(); h != nil {
					(*h)()
				}
				switch {
				case err != nil:
					fail(s.failedRecheck(p.recheck))
				case str(res[0]) == "msg":
					msg, seq := newMessage(parseID(str(res[1])), str(res[2]))
					s.wakeOne(p.m, msg, seq, pushstore.Open)
				case p.missed != nil && p.missed.kind == 'm':
					s.wakeOne(p.m, p.missed.msg, p.missed.seq, pushstore.Open)
				case str(res[0]) == "same" && p.missed == nil:
					s.endRecheck(p.m, epoch)
				default:
					s.wakeOne(p.m, nil, 0, pushstore.Retry)
				}
			}
		})
	}
	for _, p := range all {
		work <- p
	}
	close(work)
	wg.Wait()
	if len(failed) > 0 {
		go s.retryRechecks(failed)
	}
}

// retryRechecks rechecks again, after their retry time, the members whose
// recheck failed and that are still registered and not being rechecked
// already.
func (s *Store) retryRechecks(failed []recheck) {
	wait := max(failed[0].retry, recheckRetry)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-s.ctx.Done():
		return
	case <-t.C:
	}
	var again []recheck
	s.mu.Lock()
	for _, r := range failed {
		if r.m.Listed() && !r.m.pending && !r.m.rechecking {
			s.setRechecking(r.m, true)
			r.retry = min(2*wait, maxRecheckRetry)
			again = append(again, r)
		}
	}
	s.mu.Unlock()
	if len(again) > 0 {
		s.recheck(again)
	}
}

// catchUp sends a stream what it missed, in id order: every stored
// message after its cursor, and the messages of the notifications this
// instance heard meanwhile (the one that showed the gap included) that
// were not stored; the stream then takes the channel's gen, so the
// notifications after it apply as they come (those that arrived
// meanwhile, at or below that gen, are in what was fetched). A channel
// that is gone, or was made again, since the stream registered (at regGen)
// ends the stream as deleted, and a displacement since as displaced: the
// notification that would have ended it was missed. It reports false when
// the fetch failed (the member is open to notifications again).
func (s *Store) catchUp(ctx context.Context, m *member, cursor string, regGen int64, missed *note, epoch uint64) bool {
	if h := testHookFetching.Load(); h != nil {
		(*h)()
	}
	res, err := s.run(ctx, scriptFetch, m.key, cursor, regGen, s.instance)
	if h := testHookFetched.Load(); h != nil {
		(*h)()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || !m.Listed() {
		if err != nil && m.Listed() {
			// What was heard meanwhile, dropped with the hold, is kept
			// for the next catch-up (retryRechecks, or a resubscription's).
			if lc := s.local[m.key]; lc != nil {
				m.heard = append(m.heard, heard(lc, missed, m.gen, math.MaxInt64)...)
			}
		}
		s.setRechecking(m, false)
		return err == nil // a failure is tried again (retryRechecks)
	}
	if kind := str(res[0]); kind == "nf" || kind == "displaced" {
		s.unpark(m)
		s.setRechecking(m, false)
		m.counted = false
		end := pushstore.Deleted
		if kind == "displaced" {
			end = pushstore.Displaced
		}
		m.Queue.Close(end)
		return true
	}
	defer s.endRecheckLocked(m, epoch)
	// What was fetched, and what this instance heard that the fetch
	// could not return (messages not stored), sent in id order.
	gen := num(res[1])
	ns := heard(s.local[m.key], missed, m.gen, gen)
	for _, n := range m.heard {
		if n.gen > m.gen && n.gen <= gen && !slices.ContainsFunc(ns, func(o *note) bool { return o.msg.ID == n.msg.ID }) {
			ns = append(ns, n)
		}
	}
	m.heard = nil
	for i := 2; i+1 < len(res); i += 2 {
		id := parseID(str(res[i]))
		if slices.ContainsFunc(ns, func(n *note) bool { return n.msg.ID == id }) {
			continue
		}
		msg, seq := newMessage(id, str(res[i+1]))
		ns = append(ns, &note{kind: 'm', msg: msg, seq: seq})
	}
	sortByID(ns)
	last := parseCursorScore(cursor)
	for _, n := range ns {
		if n.msg.ID.After(last) {
			if !s.catchUpSend(m, n.msg, n.seq) {
				return true
			}
			last = n.msg.ID
		}
	}
	// The fetched gen, even a lower one: the channel's gen went back (a
	// failover to a replica that lacked the last events), and the
	// notifications after it must apply.
	m.gen = gen
	return true
}

// heard returns the messages a stream at gen from missed while the
// instance heard them, up to gen to (the fetch's): the notification that
// showed the gap and those held on lc while the stream was rechecked. The
// fetch returns those still stored; the others (published with
// store_messages off) are sent from these.
func heard(lc *localChannel, missed *note, from, to int64) []*note {
	var ns []*note
	if missed != nil && missed.kind == 'm' {
		ns = append(ns, missed)
	}
	if lc != nil {
		for i := range lc.notes {
			if n := &lc.notes[i]; n.kind == 'm' && n.gen > from && n.gen <= to {
				ns = append(ns, n)
			}
		}
	}
	return ns
}

// sortByID sorts message notes in id order.
func sortByID(ns []*note) {
	slices.SortFunc(ns, func(a, b *note) int {
		switch {
		case a.msg.ID.After(b.msg.ID):
			return 1
		case b.msg.ID.After(a.msg.ID):
			return -1
		}
		return 0
	})
}

// catchUpSend queues one caught-up message; s.mu is held. It reports
// whether the stream is still open.
func (s *Store) catchUpSend(m *member, msg *pushstore.Message, seq uint64) bool {
	sent, open := m.send(msg, seq)
	if sent {
		s.delivered.Add(1)
		m.cursor = scoreOf(msg.ID)
	}
	if !open {
		s.unpark(m)
		s.uncountLater(m)
	}
	return open
}

// Test hooks: before and after a catch-up's fetch, and after a
// notification is applied.
var testHookFetching, testHookFetched, testHookDelivered atomic.Pointer[func()]

// testHookRechecked runs after a long-poll's recheck script answered.
var testHookRechecked atomic.Pointer[func()]

// testHookRegister runs as a subscriber's registration begins.
var testHookRegister atomic.Pointer[func()]

// parseCursorScore turns a sorted-set score back into the id it follows.
func parseCursorScore(score string) pushstore.MessageID {
	n, err := strconv.ParseInt(score, 10, 64)
	if err != nil || n < 0 {
		return pushstore.MessageID{}
	}
	return pushstore.MessageID{Time: n / tagsPerSecond, Tag: n % tagsPerSecond}
}

// endRecheck leaves a member registered, open to notifications again.
func (s *Store) endRecheck(m *member, epoch uint64) {
	s.mu.Lock()
	s.endRecheckLocked(m, epoch)
	s.mu.Unlock()
}

// failedRecheck ends a long-poll's recheck whose call failed and returns
// it for retryRechecks: the member is open to notifications again, and
// those held meanwhile that follow its gen are applied. One held that
// shows a gap is not rechecked at once, as endRecheckLocked does: Redis
// has just failed, and would fail it as fast as it refuses (OOM, LOADING:
// a loop of calls and retry goroutines); it is the retry's missed
// notification instead, unless an earlier one is.
func (s *Store) failedRecheck(r recheck) recheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := r.m
	lc := s.local[m.key]
	if lc != nil && m.Listed() {
		if again := s.replay(lc, m); again != nil && r.missed == nil {
			r.missed = again.missed
		}
	}
	s.setRechecking(m, false)
	if lc != nil {
		s.forget(m.key, lc)
	}
	return r
}

// endRecheckLocked ends m's recheck: it applies the notifications that
// came meanwhile and are newer than its gen, or starts another recheck
// if one of them shows a gap; s.mu is held.
func (s *Store) endRecheckLocked(m *member, epoch uint64) {
	lc := s.local[m.key]
	if lc == nil || !m.Listed() {
		s.setRechecking(m, false)
		return
	}
	if again := s.replay(lc, m); again != nil {
		go s.recheck([]recheck{*again})
		return // still rechecking, still holding
	}
	if m.Listed() && epoch != s.epoch.Load() {
		// The notes subscription was made again since this recheck was
		// sent, and left m alone: what it read may predate a publication
		// the broken subscription missed.
		go s.recheck([]recheck{{m: m}})
		return // still rechecking, still holding
	}
	s.setRechecking(m, false)
	s.forget(m.key, lc)
}

// redisLog sends go-redis's own log lines to the store's log at debug level:
// the store logs outages itself, once.
type redisLog struct{ logger *zap.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	if c := l.logger.Check(zap.DebugLevel, "go-redis"); c != nil {
		c.Write(zap.String("detail", strings.TrimSpace(fmt.Sprintf(format, v...))))
	}
}
