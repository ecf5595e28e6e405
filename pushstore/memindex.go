package pushstore

import (
	"container/heap"
	"sync"
	"time"
)

// This file holds the memory store's collection index: which channels have
// messages that expire next, and which channels were left idle (no
// messages, no waiters), each by the time something is due. The sweeper and
// a full store's collection pop what is due instead of scanning every
// channel, so a refusal (507) costs what it frees, not what the store holds.

// dueEntry is one channel in a dueHeap, due at `at`.
type dueEntry struct {
	at time.Time
	c  *channel
}

// dueHeap orders channels by due time (container/heap).
type dueHeap []dueEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = dueEntry{}
	*h = old[:len(old)-1]
	return e
}

// collectIndex holds the two heaps. An entry is a hint: the channel, locked,
// says whether it still applies (channel.expiryQueued, channel.idleQueued
// name the entry that does), so entries are never searched for or fixed
// in place, only pushed and popped.
type collectIndex struct {
	mu     sync.Mutex
	expiry dueHeap // by the earliest expiry of a channel's messages
	idle   dueHeap // by when an idle channel's channel_timeout passes
}

func (x *collectIndex) push(h *dueHeap, at time.Time, c *channel) {
	x.mu.Lock()
	heap.Push(h, dueEntry{at, c})
	x.mu.Unlock()
}

// pop removes and returns the earliest entry of h if it is due at now, or
// any entry when all is set.
func (x *collectIndex) pop(h *dueHeap, now time.Time, all bool) (dueEntry, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(*h) == 0 || (!all && (*h)[0].at.After(now)) {
		return dueEntry{}, false
	}
	return heap.Pop(h).(dueEntry), true
}

// queueExpiry records a locked channel's earliest message expiry in the
// index, unless an entry at that time or earlier is there already.
func (s *MemoryStore) queueExpiry(c *channel) {
	if c.nextExpiry.IsZero() || (!c.expiryQueued.IsZero() && !c.nextExpiry.Before(c.expiryQueued)) {
		return
	}
	c.expiryQueued = c.nextExpiry
	s.index.push(&s.index.expiry, c.nextExpiry, c)
}

// done ends an operation on a locked channel: if the operation left it
// idle, it is queued for removal at the end of its channel_timeout, unless
// it is queued for that time or earlier already (an entry that comes due
// early is queued again by collect; one made stale by an earlier time is
// skipped). Then the channel is unlocked.
func (s *MemoryStore) done(c *channel) {
	if !c.deleted && len(c.msgs) == 0 && c.subs.Len() == 0 {
		if due := c.lastUsed.Add(c.channelTimeout); c.idleQueued.IsZero() || due.Before(c.idleQueued) {
			c.idleQueued = due
			s.index.push(&s.index.idle, due, c)
		}
	}
	c.mu.Unlock()
}

// collect removes the expired messages and the idle channels (no
// messages, no waiters) whose channel_timeout has passed, or every idle
// channel when force is set (memory pressure). It pops what is due from
// the collection index, so its cost is what it removes and the entries it
// finds out of date, not the size of the store. It returns the number of
// channels removed. It must be called with no channel locked.
func (s *MemoryStore) collect(force bool) int {
	now := s.now()
	for {
		e, ok := s.index.pop(&s.index.expiry, now, false)
		if !ok {
			break
		}
		c := e.c
		s.visits.Add(1)
		c.mu.Lock()
		if !c.deleted && e.at.Equal(c.expiryQueued) {
			c.expiryQueued = time.Time{}
			s.pruneExpired(c, now)
			s.queueExpiry(c)
		}
		s.done(c)
	}
	removed := 0
	for {
		e, ok := s.index.pop(&s.index.idle, now, force)
		if !ok {
			break
		}
		c := e.c
		s.visits.Add(1)
		c.mu.Lock()
		if c.deleted || !e.at.Equal(c.idleQueued) {
			c.mu.Unlock()
			continue
		}
		c.idleQueued = time.Time{}
		if len(c.msgs) == 0 && c.subs.Len() == 0 && (force || !now.Before(c.lastUsed.Add(c.channelTimeout))) {
			s.dropLocked(c)
			c.mu.Unlock()
			s.unmap(c, now)
			removed++
			continue
		}
		s.done(c) // used since it was queued: queued again for its new time
	}
	if !force {
		s.pruneTombs(now)
	}
	return removed
}
