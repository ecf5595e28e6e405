package redisstore

import (
	"context"
	"strconv"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds this process's side of the Redis store's subscriptions:
// each is on the local list of each of its channels, counted in Redis by
// the script that registers it, and sent what the notifications that the
// listener hands to deliver carry.
//
// A subscriber's gen is the channel's gen as of the last event it saw.
// The notification that raises the channel from that gen to the next
// carries the next event, so it is applied as it is; one with a higher gen
// shows the subscriber missed an event (a broken notes subscription, or
// keys that expired and were made again), and it is rechecked in Redis
// instead: a long-poll gets the first stored message after its cursor, a
// stream everything stored after it.

// localChannel is this process's part of a channel: its subscribers, and
// the notifications received while some subscriber's registration has not
// yet learned its gen.
type localChannel struct {
	subs    pushstore.WaitList[*member]
	pending int
	// rechecking counts the listed members being rechecked in Redis.
	rechecking int
	// notes are the notifications that came while a member was pending
	// or rechecking: each applies them, past its gen, when it settles or
	// its recheck answers. notesBase numbers notes[0] (notes[i] is the
	// notesBase+i-th held since the channel was listed here): a member
	// needs none held before it began pending or rechecking (heldFrom),
	// and hold drops those no member needs.
	notes     []note
	notesBase uint64
	streams   int           // of subs, the streams (keepalives refresh their count)
	ct        time.Duration // channel_timeout, for keepalives
	kept      time.Time     // last keepalive
}

// redisSub is a subscription of the Redis store, on one channel (a
// long-poll) or several (Follow).
type redisSub struct {
	pushstore.Queue
	members []member
	one     [1]member
}

// newRedisSub makes a subscription on n channels; the caller names them
// (members[i].key).
func newRedisSub(s *Store, n int, oneShot bool, queueBytes int64) *redisSub {
	sub := &redisSub{}
	if n == 1 {
		sub.members = sub.one[:]
	} else {
		sub.members = make([]member, n)
	}
	sub.Init(oneShot, queueBytes)
	for i := range sub.members {
		m := &sub.members[i]
		m.Member.Init(&sub.Queue, i)
		m.s, m.stream = s, !oneShot
	}
	return sub
}

// Cancel takes the subscription off its channels and uncounts it in Redis.
func (sub *redisSub) Cancel() {
	for i := range sub.members {
		if m := &sub.members[i]; m.s != nil {
			m.s.leave(m)
		}
	}
}

// member is a subscription's place on one of its channels here, with what
// the store knows of it; the store's mu guards it.
type member struct {
	pushstore.Member
	s       *Store
	key     string
	stream  bool   // stays for every message; else one-shot (a long-poll)
	gen     int64  // the channel's gen as of the last event it saw
	regGen  int64  // the gen it was registered at (a stream's count)
	cursor  string // the sorted-set score of the last message it was sent
	pending bool   // its registration has not returned yet
	counted bool   // Redis counts it (w or s) until it leaves
	epoch   uint64 // the notes subscription's epoch it registered in; 0: none
	// rechecking says a recheck in Redis is under way for it (it missed a
	// notification); notifications leave it alone until the recheck
	// answers, and are held on its channel (notes) until then.
	rechecking bool
	holds      bool // counted in its channel's rechecking
	// heard are the message notifications a stream's failed catch-up had
	// held (newer than its gen): the next catch-up sends those the fetch
	// cannot return (store_messages off).
	heard []*note
	// heldFrom numbers the first of its channel's held notes it may need:
	// those held from when it began pending or rechecking.
	heldFrom uint64
}

// note is a notification: a message, a deletion or a `last` displacement
// with the gen it raised the channel to.
type note struct {
	kind    byte // 'm', 'd' or 'x'
	gen     int64
	key     string
	id      string             // of a message: "time:tag"
	payload string             // of a message: its stored form
	msg     *pushstore.Message // built from id and payload when a subscriber is here
	seq     uint64             // of a message: its publication time, µs
}

// send queues msg to m's subscription (see pushstore.Queue.Push); it
// reports whether msg was queued and whether the subscription stays open.
func (m *member) send(msg *pushstore.Message, seq uint64) (sent, open bool) {
	return m.Queue.Push(pushstore.Delivery{Message: msg, Channel: m.Channel, Seq: seq})
}

// apply applies a notification that follows m's gen, n.gen == m.gen+1;
// s.mu is held. It reports whether m stays on the channel's list. A
// message goes through fan, the notification's to the whole channel, or
// with a nil fan as send does.
func (s *Store) apply(m *member, n *note, fan *pushstore.Fanout) (keep bool) {
	m.gen = n.gen
	switch n.kind {
	case 'd':
		m.Queue.Close(pushstore.Deleted)
		m.counted = false
		return false
	case 'x':
		m.Queue.Close(pushstore.Displaced)
		m.counted = false
		return false
	}
	var sent, open bool
	if fan == nil {
		sent, open = m.send(n.msg, n.seq)
	} else {
		sent, open = fan.Push(m.Queue, pushstore.Delivery{Message: n.msg, Channel: m.Channel, Seq: n.seq})
	}
	if sent {
		s.delivered.Add(1)
		m.cursor = scoreOf(parseID(n.id))
	}
	if !m.stream {
		m.counted = false // the publication wiped the long-polls' count
	} else if !open {
		s.uncountLater(m) // it fell behind: ended now, its handler may be a while
	}
	return m.stream && open
}

// uncountLater takes a stream that ended on the store's side (it fell
// behind) out of Redis's count at once, without waiting for its handler,
// which may be stuck writing to the slow client; s.mu is held.
func (s *Store) uncountLater(m *member) {
	if !m.counted {
		return
	}
	m.counted = false
	key, gen := m.key, m.regGen
	go func() {
		ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
		defer cancel()
		_, _ = s.run(ctx, scriptCancel, key, s.instance, gen, 1, "s")
	}()
}

// scoreOf is an id's sorted-set score.
func scoreOf(id pushstore.MessageID) string {
	return cursorScore(true, id, pushstore.Start{})
}

// register puts a new member on its channel's list, pending until its
// registration script answers, and reports whether it did: not once
// ReleaseAll has begun.
func (s *Store) register(m *member) bool {
	if h := testHookRegister.Load(); h != nil {
		(*h)()
	}
	if s.subscribed.Load() {
		m.epoch = s.epoch.Load()
	}
	s.mu.Lock()
	if s.closing.Load() {
		// Checked under s.mu: ReleaseAll sets closing before it takes
		// s.mu to end the members, so one added after it would stay
		// open on a released store.
		s.mu.Unlock()
		return false
	}
	m.pending = true
	lc := s.local[m.key]
	if lc == nil {
		lc = &localChannel{}
		s.local[m.key] = lc
	}
	m.heldFrom = lc.heldEnd()
	lc.subs.Add(m)
	lc.pending++
	if m.stream {
		lc.streams++
	}
	s.mu.Unlock()
	return true
}

// unpark takes a member off its channel's list and reports whether it was
// on it; s.mu is held.
func (s *Store) unpark(m *member) bool {
	lc := s.local[m.key]
	if lc == nil || !lc.subs.Remove(m) {
		return false
	}
	if m.stream {
		lc.streams--
	}
	s.release(lc, m)
	s.forget(m.key, lc)
	return true
}

// setRechecking starts or ends a member's recheck; s.mu is held. While a
// listed member is rechecking, its channel holds the notifications that
// come, for it to apply when the recheck answers (see replay).
func (s *Store) setRechecking(m *member, on bool) {
	m.rechecking = on
	if !on {
		if lc := s.local[m.key]; lc != nil {
			s.release(lc, m)
		}
		return
	}
	if lc := s.local[m.key]; lc != nil && !m.holds && m.Listed() {
		m.holds = true
		if !m.pending {
			// A settling member (settle's replay found a gap) keeps the
			// notes held since it registered: its catch-up sends those
			// after the gap that the fetch cannot return (heard).
			m.heldFrom = lc.heldEnd()
		}
		lc.rechecking++
	}
}

// release ends a member's hold on its channel's notes; s.mu is held.
func (s *Store) release(lc *localChannel, m *member) {
	if !m.holds {
		return
	}
	m.holds = false
	lc.rechecking--
	lc.dropUnheldNotes()
}

// replay applies to m the held notifications newer than its gen, in
// order; s.mu is held. A message that does not follow m's gen (one was
// missed) starts a recheck instead, which replay reports.
func (s *Store) replay(lc *localChannel, m *member) (again *recheck) {
	from := 0
	if m.heldFrom > lc.notesBase {
		from = int(min(m.heldFrom-lc.notesBase, uint64(len(lc.notes))))
	}
	for i := from; i < len(lc.notes); i++ { // those held before it began are no news to it
		n := &lc.notes[i]
		if !m.Listed() || n.gen <= m.gen {
			continue
		}
		if n.kind == 'm' && n.gen != m.gen+1 && !afterCursor(n.id, m.cursor) {
			// Held from before the channel's gen went back (a failover to
			// a replica that lacked the last events): m has its message,
			// or its cursor is past it, and its gen means nothing now.
			continue
		}
		if n.kind == 'm' && n.gen != m.gen+1 {
			missed := *n
			return &recheck{m: m, missed: &missed}
		}
		if !s.apply(m, n, nil) {
			s.unpark(m)
		}
	}
	return nil
}

// endPending ends a member's pending state; s.mu is held.
func (s *Store) endPending(lc *localChannel, m *member) {
	if !m.pending {
		return
	}
	m.pending = false
	lc.pending--
	lc.dropUnheldNotes()
}

// dropUnheldNotes forgets the held notifications once no member is pending
// or rechecking.
func (lc *localChannel) dropUnheldNotes() {
	if lc.pending == 0 && lc.rechecking == 0 {
		lc.notesBase = lc.heldEnd()
		lc.notes = nil
	}
}

// heldEnd numbers the next note held on lc.
func (lc *localChannel) heldEnd() uint64 { return lc.notesBase + uint64(len(lc.notes)) }

// trimEvery is how many notes are held between two trims.
const trimEvery = 64

// hold holds a notification that came while a member was pending or
// rechecking. Every trimEvery notes it drops those that came before every
// pending or rechecking member began, which none needs: a channel whose
// registrations overlap without end (long-polls re-polling while others
// are published to) would otherwise hold every notification, payloads
// included, for as long as they overlap.
func (lc *localChannel) hold(n note) {
	lc.notes = append(lc.notes, n)
	if len(lc.notes)%trimEvery != 0 {
		return
	}
	least := lc.heldEnd()
	lc.subs.Each(func(m *member) {
		if (m.pending || m.holds) && m.heldFrom < least {
			least = m.heldFrom
		}
	})
	if k := int(least - lc.notesBase); k > 0 {
		lc.notes = append([]note(nil), lc.notes[k:]...)
		lc.notesBase = least
	}
}

// forget drops a channel with no subscriber left; s.mu is held.
func (s *Store) forget(key string, lc *localChannel) {
	if lc.subs.Len() == 0 && lc.pending == 0 && s.local[key] == lc {
		delete(s.local, key)
	}
}

// unregister drops a pending member whose registration failed or that
// will not wait after all.
func (s *Store) unregister(m *member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lc := s.local[m.key]
	if lc == nil {
		return
	}
	s.endPending(lc, m)
	if lc.subs.Remove(m) && m.stream {
		lc.streams--
	}
	s.forget(m.key, lc)
}

// settle records a registered member's gen and cursor, and applies the
// notifications that came while it was pending and are newer than its
// gen. A member registered while the notes subscription was down or being
// replaced may have missed its notification: it is rechecked in Redis now
// if the notes subscription is back, or by the listener when it is.
func (s *Store) settle(m *member, gen int64, cursor string, ct time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lc := s.local[m.key]
	if lc == nil {
		return // released meanwhile (exit)
	}
	m.gen, m.regGen, m.cursor, m.counted = gen, gen, cursor, true
	if ct > 0 {
		lc.ct = ct
	}
	again := s.replay(lc, m)
	if again == nil && m.Listed() && (m.epoch == 0 || m.epoch != s.epoch.Load()) && s.subscribed.Load() {
		again = &recheck{m: m}
	}
	if again != nil {
		s.setRechecking(m, true)
	}
	s.endPending(lc, m)
	s.forget(m.key, lc)
	if again != nil {
		go s.recheck([]recheck{*again})
	}
}

// deliver applies a notification to this process's subscribers: each one
// at the gen before the notification's is sent it (a long-poll is then
// done); one at an older gen is rechecked.
func (s *Store) deliver(n note) {
	s.mu.Lock()
	lc := s.local[n.key]
	if lc == nil {
		s.mu.Unlock()
		return
	}
	if n.kind == 'm' && n.msg == nil {
		n.msg, n.seq = newMessage(parseID(n.id), n.payload)
	}
	if lc.pending > 0 || lc.rechecking > 0 {
		lc.hold(n)
	}
	var missed []recheck
	fan := pushstore.NewFanout(lc.subs.Len())
	lc.subs.Filter(func(m *member) bool {
		switch {
		case m.pending || m.rechecking:
			return true
		case m.gen >= n.gen:
			if n.kind == 'm' && afterCursor(n.id, m.cursor) {
				// A message newer than the member's cursor at a gen it
				// has passed: the channel's gen went back (a failover to a
				// replica that lacked the last events the member saw).
				// Looked up again, as a missed notification is.
				// Its gen goes below the notification's, so the ones after
				// it show a gap until a recheck answers (one that fails
				// would otherwise let the next take the member past it).
				m.gen = n.gen - 1
				s.setRechecking(m, true)
				missed = append(missed, recheck{m: m, missed: &n})
			}
			return true
		case n.kind == 'm' && n.gen != m.gen+1:
			s.setRechecking(m, true)
			missed = append(missed, recheck{m: m, missed: &n})
			return true
		}
		keep := s.apply(m, &n, &fan)
		if !keep && m.stream {
			lc.streams--
		}
		return keep
	})
	s.forget(n.key, lc)
	s.mu.Unlock()
	if len(missed) > 0 {
		go s.recheck(missed)
	}
	if h := testHookDelivered.Load(); h != nil {
		(*h)()
	}
}

// leave takes a member off its channel (its subscriber went away, timed
// out or was answered) and uncounts it in Redis if Redis still counts it.
func (s *Store) leave(m *member) {
	s.mu.Lock()
	s.unpark(m)
	counted, gen, kind := m.counted, m.gen, "w"
	if m.stream {
		gen, kind = m.regGen, "s"
	}
	m.counted = false
	s.mu.Unlock()
	if !counted { // ReleaseAll uncounted those it ended
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	_, _ = s.run(ctx, scriptCancel, m.key, s.instance, gen, 1, kind)
}

// wakeOne ends a parked long-poll member with a message, or with end when
// msg is nil, if it is still parked.
func (s *Store) wakeOne(m *member, msg *pushstore.Message, seq uint64, end pushstore.End) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setRechecking(m, false)
	if !s.unpark(m) {
		return
	}
	m.counted = false // the recheck uncounted it, or the event that ended its wait did
	if msg == nil {
		m.Queue.Close(end)
	} else if sent, _ := m.send(msg, seq); sent {
		s.delivered.Add(1)
	}
}

// afterCursor reports whether the message id comes after a member's cursor
// (a sorted-set score).
func afterCursor(id, cursor string) bool {
	c, err := strconv.ParseInt(cursor, 10, 64)
	if err != nil {
		return false
	}
	sc, err := strconv.ParseInt(scoreOf(parseID(id)), 10, 64)
	return err == nil && sc > c
}
