package pushstore

import (
	"errors"
	"slices"
)

// This file holds the memory store's Follow: subscriptions on one or more
// channels that stay registered (streams) or end with their first message
// (multiplexed long-polls and interval-polls).

// Follow registers a subscription on keys' channels; see Store.
func (s *MemoryStore) Follow(keys []string, req FollowRequest) (Subscription, error) {
	return withRoom(s, func() (Subscription, error) { return s.follow(keys, req) })
}

func (s *MemoryStore) follow(keys []string, req FollowRequest) (Subscription, error) {
	if sub, done, err := LookFirst(keys, req, s.follow); done {
		return sub, err
	}
	ms := newMemSub(s, len(keys), req.OneShot || req.NoWait, req.QueueBytes)
	ms.OnBehind = req.OnBehind
	if s.closing.Load() && !req.NoWait {
		ms.Close(Shutdown)
		return ms, nil
	}
	var backlog []Delivery
	last := 0 // where the last channel's backlog begins
	for i, key := range keys {
		last = len(backlog)
		var cursor MessageID
		if req.HasCursor && i < len(req.Cursors) {
			cursor = req.Cursors[i]
		}
		var err error
		if backlog, err = s.join(ms, i, key, req.On(keys, i), cursor, backlog); err != nil {
			ms.Cancel()
			if err == errReleased {
				ms.Close(Shutdown)
				return ms, nil
			}
			return nil, err
		}
	}
	if req.NoWait && len(backlog) == 0 {
		return nil, nil
	}
	if !req.OneShot && !req.NoWait && !ms.Ended() {
		// The last channel's backlog was counted by its join.
		s.delivered.Add(uint64(len(backlog)))
		ByChannel(backlog[:last], func(ch int, ds []Delivery) { s.receivedAll(keys[ch], ds) })
	}
	ms.Preload(backlog)
	if (req.OneShot || req.NoWait) && len(backlog) > 0 {
		ms.Cancel() // answered: off every channel now
		if d, ok := ms.AnsweredFrom(backlog); ok {
			s.receivedAnswer(keys[d.Channel], d)
		}
	}
	return ms, nil
}

// errReleased is join's answer once ReleaseAll has begun.
var errReleased = errors.New("pushstore: store released")

// join registers subscription ms on the channel of key as its channel i,
// after the concurrency and limit checks, and appends the channel's
// backlog for cursor to backlog: every stored message after the cursor
// for a stream (counted as received, with the recipient rules applied,
// once every channel took the stream: by join itself on the last channel,
// under the lock it holds, by follow on the others), the first one
// only for a one-shot subscription (counted once it is known to be the one
// sent, by receivedAnswer). An interval-poll (NoWait) is registered
// nowhere, nor is a one-shot subscription once it has a backlog.
func (s *MemoryStore) join(ms *memSub, i int, key string, req FollowRequest, cursor MessageID, backlog []Delivery) ([]Delivery, error) {
	now := s.now()
	c, err := s.locked(key, req.Create, now)
	if err != nil {
		return backlog, err
	}
	if c == nil {
		return backlog, ErrChannelNotFound
	}
	defer s.done(c)
	c.lastRequested = now
	c.lastUsed = now
	if c.subs.Len() > 0 {
		switch req.Concurrency {
		case First:
			return backlog, ErrConflict
		case Last:
			c.subs.EndAll(Displaced)
		}
		if req.MaxWaiters > 0 && c.subs.Len() >= req.MaxWaiters {
			return backlog, ErrTooManySubscribers
		}
	}
	from := c.start(req.HasCursor, cursor, req.Start)
	if req.OneShot || req.NoWait {
		if from < len(c.msgs) {
			st := c.msgs[from]
			backlog = append(backlog, Delivery{Message: st.Message, Channel: i, Seq: st.seq})
		}
	} else {
		for _, st := range c.msgs[from:] {
			backlog = append(backlog, Delivery{Message: st.Message, Channel: i, Seq: st.seq})
		}
	}
	if req.NoWait || req.OneShot && len(backlog) > 0 {
		// An interval-poll waits nowhere, nor does a one-shot one that
		// has its answer: a later message of this channel pushed to it
		// would be counted as received and not sent (Preload answers
		// the older one). A message pushed from a channel joined before
		// is the answer (Preload), and this backlog stays stored.
		return backlog, nil
	}
	if s.closing.Load() {
		// Checked again under the channel's lock: ReleaseAll sets closing
		// before it locks a channel to end its subscribers, so one added
		// after it passed would be left open on a released store.
		return backlog, errReleased
	}
	ms.chans[i] = c
	c.subs.Add(&ms.members[i])
	if i == len(ms.chans)-1 && !req.OneShot && !ms.Ended() {
		// (A stream already ended, by the deletion or a `last`
		// displacement on an earlier channel, is sent nothing.)
		s.receivedStored(c, c.msgs[from:])
	}
	return backlog, nil
}

// receivedAnswer counts d, the message a one-shot subscription was
// answered with once it was on every channel it waited on, as delivered,
// with its recipient rules if it is still stored.
func (s *MemoryStore) receivedAnswer(key string, d Delivery) {
	s.delivered.Add(1)
	s.receivedAll(key, []Delivery{d})
}

// receivedAll counts ds, messages of key's channel in its buffer's order,
// as received, and applies their recipient rules.
func (s *MemoryStore) receivedAll(key string, ds []Delivery) {
	c, _ := s.locked(key, false, s.now())
	if c == nil {
		return
	}
	defer s.done(c)
	var got []*stored
	k := 0
	for _, st := range c.msgs { // both in buffer order: one pass
		for k < len(ds) && ds[k].Seq < st.seq {
			k++ // no longer stored
		}
		if k == len(ds) {
			break
		}
		if ds[k].Message == st.Message {
			got = append(got, st)
			k++
		}
	}
	s.receivedStored(c, got)
}

// receivedStored counts a locked channel's stored messages got, in buffer
// order, as received and applies their recipient rules. got may be a
// window of c.msgs: it is copied before a rule removes from c.msgs.
func (s *MemoryStore) receivedStored(c *channel, got []*stored) {
	rules := false
	for _, st := range got {
		st.received++
		rules = rules || st.hasRule()
	}
	if rules { // afterDelivery may remove from c.msgs, which got may share
		for _, st := range slices.Clone(got) {
			s.afterDelivery(c, st)
		}
	}
}
