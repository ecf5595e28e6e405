package redisstore

import (
	"context"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds this process's side of the Redis store's subscriptions:
// each is registered in a local list of its channel, counted in Redis by
// the script that parks it, and woken by the notifications the listener
// hands to deliver.

// localChannel is this process's part of a channel: its subscriptions,
// and the notifications received while some subscription's Subscribe call
// has not yet learned its gen.
type localChannel struct {
	subs    pushstore.WaitList[*member]
	pending int
	notes   []note
	ct      time.Duration // channel_timeout, for keepalives
	kept    time.Time     // last keepalive
}

// redisSub is a subscription of the Redis store.
type redisSub struct {
	pushstore.Queue
	m member
}

// Cancel takes the subscription off its channel and uncounts it in Redis.
func (sub *redisSub) Cancel() {
	if sub.m.s != nil {
		sub.m.s.leave(&sub.m)
	}
}

// member is a subscription's place on its channel here, with what the
// store knows of it; the store's mu guards it.
type member struct {
	pushstore.Member
	s       *Store
	key     string
	gen     int64  // the channel's gen when it was registered
	cursor  string // the sorted-set score it waits after
	pending bool   // its Subscribe call has not returned yet
	epoch   uint64 // the subscription epoch it registered in; 0: unsubscribed
	// rechecking says a recheck in Redis is under way for it: it missed a
	// notification, so the next one it got was not the first message after
	// its cursor. Notifications leave it alone until the recheck answers.
	rechecking bool
}

// note is a notification: a message, a deletion or a `last` displacement
// with the gen it raised the channel to.
type note struct {
	kind    byte // 'm', 'd' or 'x'
	gen     int64
	key     string
	id      string             // of a message: "time:tag"
	payload string             // of a message: content type "\n" body
	msg     *pushstore.Message // built from id and payload when a subscriber is here
}

// answer ends m's one-shot subscription with n: its message, or the end
// of a deletion or displacement. It reports whether a message was sent.
func (n *note) answer(m *member) bool {
	switch n.kind {
	case 'm':
		return m.send(n.msg)
	case 'd':
		m.Queue.Close(pushstore.Deleted)
	default:
		m.Queue.Close(pushstore.Displaced)
	}
	return false
}

// send queues msg to m's subscription and reports whether it took it.
func (m *member) send(msg *pushstore.Message) bool {
	ok, _ := m.Queue.Push(pushstore.Delivery{Message: msg, Channel: m.Channel})
	return ok
}

// register parks a new subscription, pending until Subscribe learns its
// gen.
func (s *Store) register(key string) *redisSub {
	sub := &redisSub{}
	sub.Init(true, 1)
	m := &sub.m
	m.Member.Init(&sub.Queue, 0)
	m.s, m.key, m.pending = s, key, true
	if s.subscribed.Load() {
		m.epoch = s.epoch.Load()
	}
	s.mu.Lock()
	lc := s.local[key]
	if lc == nil {
		lc = &localChannel{}
		s.local[key] = lc
	}
	lc.subs.Add(m)
	lc.pending++
	s.mu.Unlock()
	return sub
}

// unpark takes a registered subscription off its channel and reports
// whether it was on it; s.mu is held.
func (s *Store) unpark(m *member) bool {
	lc := s.local[m.key]
	if lc == nil || !lc.subs.Remove(m) {
		return false
	}
	s.forget(m.key, lc)
	return true
}

// endPending ends a subscription's pending state; s.mu is held.
func (s *Store) endPending(lc *localChannel, m *member) {
	if !m.pending {
		return
	}
	m.pending = false
	lc.pending--
	if lc.pending == 0 {
		lc.notes = nil
	}
}

// forget drops a channel with no subscription left; s.mu is held.
func (s *Store) forget(key string, lc *localChannel) {
	if lc.subs.Len() == 0 && lc.pending == 0 && s.local[key] == lc {
		delete(s.local, key)
	}
}

// unregister drops a pending subscription that will not wait after all.
func (s *Store) unregister(sub *redisSub) {
	if sub == nil {
		return
	}
	m := &sub.m
	s.mu.Lock()
	defer s.mu.Unlock()
	lc := s.local[m.key]
	if lc == nil {
		return
	}
	s.endPending(lc, m)
	lc.subs.Remove(m)
	s.forget(m.key, lc)
}

// settle records a parked subscription's gen and applies the notifications
// that came while it was pending and are newer than its gen.
//
// A subscription registered while the notes subscription was down or
// being replaced may have missed its notification: it is rechecked in
// Redis now if the notes subscription is back, or by the listener when it
// is.
func (s *Store) settle(m *member, gen int64, cursor string, ct time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lc := s.local[m.key]
	if lc == nil {
		return // released meanwhile (exit)
	}
	m.gen, m.cursor = gen, cursor
	if ct > 0 {
		lc.ct = ct
	}
	lc.kept = time.Now() // the subscribe script marked the channel used
	var again *recheck
	if m.Listed() {
		for i := range lc.notes {
			if n := &lc.notes[i]; n.gen > gen {
				if missed := s.apply(lc, m, n); missed != nil {
					again = &recheck{m, missed}
				}
				break
			}
		}
	}
	s.endPending(lc, m)
	s.forget(m.key, lc)
	if again == nil && m.Listed() && (m.epoch == 0 || m.epoch != s.epoch.Load()) && s.subscribed.Load() {
		m.rechecking = true
		again = &recheck{m: m}
	}
	if again != nil {
		go s.recheck([]recheck{*again})
	}
}

// apply ends a parked subscription's wait with a notification newer than
// its gen; s.mu is held. Only the notification that raised the channel
// from the subscription's gen to the next one carries the first message
// after its cursor: for a later one the subscription missed an event (a
// broken notes subscription, or keys that expired and were made again), so
// apply marks it rechecking and returns the notification; the caller
// rechecks it in Redis, which sends it the right message. A deletion or a
// displacement ends the wait whatever was missed before it.
func (s *Store) apply(lc *localChannel, m *member, n *note) (missed *note) {
	if n.kind == 'm' && n.gen != m.gen+1 {
		m.rechecking = true
		return n
	}
	lc.subs.Remove(m)
	if n.answer(m) {
		s.delivered.Add(1)
	}
	return nil
}

// deliver applies a notification to this process's subscriptions: every
// one parked at the gen before the notification's is sent it; one parked
// at an older gen is rechecked (see apply).
func (s *Store) deliver(n note) {
	s.mu.Lock()
	lc := s.local[n.key]
	if lc == nil {
		s.mu.Unlock()
		return
	}
	if n.kind == 'm' && n.msg == nil {
		n.msg = newMessage(parseID(n.id), n.payload)
	}
	if lc.pending > 0 {
		lc.notes = append(lc.notes, n)
	}
	woken := 0
	var missed []recheck
	lc.subs.Filter(func(m *member) bool {
		switch {
		case m.pending || m.rechecking || m.gen >= n.gen:
			return true
		case n.kind == 'm' && n.gen != m.gen+1: // see apply
			m.rechecking = true
			missed = append(missed, recheck{m, &n})
			return true
		}
		if n.answer(m) {
			woken++
		}
		return false
	})
	s.forget(n.key, lc)
	s.mu.Unlock()
	s.delivered.Add(uint64(woken))
	if len(missed) > 0 {
		go s.recheck(missed)
	}
}

// leave takes a subscription off its channel (the client went away or
// timed out) and uncounts it in Redis.
func (s *Store) leave(m *member) {
	s.mu.Lock()
	parked, gen := s.unpark(m), m.gen
	s.mu.Unlock()
	if !parked || s.closing.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	_, _ = s.run(ctx, scriptCancel, m.key, s.instance, gen, 1)
}

// wakeOne ends one parked subscription with a message, or with end when
// msg is nil, if it is still parked.
func (s *Store) wakeOne(m *member, msg *pushstore.Message, end pushstore.End) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.unpark(m) {
		return
	}
	if msg == nil {
		m.Queue.Close(end)
	} else if m.send(msg) {
		s.delivered.Add(1)
	}
}
