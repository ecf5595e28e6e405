package pushstore

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddypush/caddy-push/internal/sweep"
)

// This file holds the in-memory store: channels, their message buffers and
// ids, the buffer and expiry rules, the byte budget and the subscriptions.

// MemoryStore is the in-memory channel store. It is safe for concurrent
// use; each channel has its own lock and the channel map has another.
type MemoryStore struct {
	now func() time.Time

	mu       sync.RWMutex
	channels map[string]*channel
	// tombs holds the last id of channels removed in the second of their
	// last id, or earlier if the clock went back: a channel made again
	// under the same key continues after it, so a subscriber's cursor from
	// the old channel never hides the new one's messages. Entries go once
	// the clock has passed their second.
	tombs map[string]MessageID

	index collectIndex

	maxBytes     atomic.Int64
	used         atomic.Int64
	channelBytes atomic.Int64
	closing      atomic.Bool

	published atomic.Uint64
	delivered atomic.Uint64
	expired   atomic.Uint64
	// seq is the last publication's Delivery.Seq: the latest second an id
	// was given (high 32 bits) and a count within it (low 32 bits), taken
	// together by one compare-and-swap (tick).
	seq atomic.Uint64

	sweeper sweep.Ticker
	visits  atomic.Int64 // channels collect has looked at, for tests
}

// channel is one named queue with its subscriptions; mu guards every field.
type channel struct {
	key            string
	mu             sync.Mutex
	msgs           []*stored
	subs           WaitList[*Member]
	lastID         MessageID
	lastRequested  time.Time // zero: never
	lastUsed       time.Time
	channelTimeout time.Duration
	minBuffer      int
	opts           PublishOptions // of the last publication
	published      bool           // opts is set
	nextExpiry     time.Time      // earliest message expiry; zero: none
	bytes          int64          // charged to the store, overhead included
	deleted        bool

	// The collection index's entries that apply to it (zero: none); see
	// collectIndex.
	expiryQueued time.Time
	idleQueued   time.Time
}

// stored is a message in a channel's buffer, with the rules that apply
// to it.
type stored struct {
	*Message
	expires       time.Time // zero: never
	minRecipients int
	deleteOldest  bool
	received      int
	size          int64  // charged to the budget
	seq           uint64 // its publication's Delivery.Seq
}

// hasRule reports whether a delivery may remove m (min_message_recipients,
// delete_oldest_received_message).
func (m *stored) hasRule() bool { return m.minRecipients > 0 || m.deleteOldest }

// memSub is a subscription of the memory store: its queue and its place
// on each of its channels.
type memSub struct {
	Queue
	s       *MemoryStore
	members []Member   // one per channel, by position
	chans   []*channel // where each member is registered; nil: nowhere
	one     [1]Member  // members' array for one channel: a long-poll allocates no slice
	oneChan [1]*channel
}

func newMemSub(s *MemoryStore, n int, oneShot bool, queueBytes int64) *memSub {
	ms := &memSub{s: s}
	if n == 1 {
		ms.members, ms.chans = ms.one[:], ms.oneChan[:]
	} else {
		ms.members, ms.chans = make([]Member, n), make([]*channel, n)
	}
	ms.Init(oneShot, queueBytes)
	for i := range ms.members {
		ms.members[i].Init(&ms.Queue, i)
	}
	return ms
}

// Cancel takes the subscription off its channels.
func (ms *memSub) Cancel() {
	for i, c := range ms.chans {
		if c == nil {
			continue
		}
		c.mu.Lock()
		if c.subs.Remove(&ms.members[i]) {
			c.lastUsed = ms.s.now()
		}
		ms.s.done(c)
	}
}

// NewMemoryStore returns an empty store with the given byte budget. now is
// the clock (time.Now when nil); tests inject their own.
func NewMemoryStore(maxBytes int64, now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	s := &MemoryStore{now: now, channels: make(map[string]*channel), tombs: make(map[string]MessageID)}
	s.maxBytes.Store(maxBytes)
	return s
}

// SetMaxBytes changes the byte budget; stored messages are kept even when
// they exceed a lowered budget, but new ones are refused until it fits.
func (s *MemoryStore) SetMaxBytes(n int64) { s.maxBytes.Store(n) }

// MaxBytes returns the byte budget.
func (s *MemoryStore) MaxBytes() int64 { return s.maxBytes.Load() }

// UsedBytes returns the bytes charged against the budget.
func (s *MemoryStore) UsedBytes() int64 { return s.used.Load() }

// Counters returns the lifetime counts.
func (s *MemoryStore) Counters() Counters {
	return Counters{Published: s.published.Load(), Delivered: s.delivered.Load(), Expired: s.expired.Load()}
}

// tryReserve charges n bytes and releases `freed` bytes (of messages the
// caller is about to remove without releasing them again) in one step, if
// the total stays within the budget; so the count never exceeds it.
func (s *MemoryStore) tryReserve(n, freed int64) bool {
	for {
		used := s.used.Load()
		if used-freed+n > s.maxBytes.Load() {
			return false
		}
		if s.used.CompareAndSwap(used, used-freed+n) {
			return true
		}
	}
}

func (s *MemoryStore) release(n int64) { s.used.Add(-n) }

// lookup returns the channel for key, creating it when create is set.
// It returns (nil, nil) when the channel does not exist and create is off.
func (s *MemoryStore) lookup(key string, create bool) (*channel, error) {
	s.mu.RLock()
	c := s.channels[key]
	s.mu.RUnlock()
	if c != nil || !create {
		return c, nil
	}
	cost := int64(len(key)) + ChannelOverhead
	if !s.tryReserve(cost, 0) {
		return nil, ErrInsufficientStorage
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.channels[key]; c != nil {
		s.release(cost)
		return c, nil
	}
	c = &channel{
		key:            key,
		lastUsed:       s.now(),
		channelTimeout: DefaultChannelTimeout,
		minBuffer:      DefaultMinBuffer,
		bytes:          cost,
	}
	if id, ok := s.tombs[key]; ok {
		c.lastID = id
		delete(s.tombs, key)
	}
	s.channels[key] = c
	s.channelBytes.Add(cost)
	return c, nil
}

// withRoom runs op, and when the store refuses it for lack of room,
// collects expired messages and idle channels and runs it once more. It
// must be called with no channel locked.
func withRoom[T any](s *MemoryStore, op func() (T, error)) (T, error) {
	v, err := op()
	if err == ErrInsufficientStorage {
		s.collect(true)
		v, err = op()
	}
	return v, err
}

// locked finds (or creates) the channel for key and returns it locked and
// not deleted, with expired messages removed. It returns (nil, nil) when the
// channel does not exist and create is off. The caller ends with s.done.
func (s *MemoryStore) locked(key string, create bool, now time.Time) (*channel, error) {
	for {
		c, err := s.lookup(key, create)
		if c == nil || err != nil {
			return nil, err
		}
		c.mu.Lock()
		if !c.deleted {
			s.pruneExpired(c, now)
			return c, nil
		}
		c.mu.Unlock() // removed meanwhile: look it up again
	}
}

// Publish stores (unless store_messages is off) and broadcasts a message.
func (s *MemoryStore) Publish(key string, msg *Message, opts PublishOptions) (PublishResult, error) {
	return withRoom(s, func() (PublishResult, error) { return s.publish(key, msg, opts) })
}

func (s *MemoryStore) publish(key string, m *Message, opts PublishOptions) (PublishResult, error) {
	now := s.now()
	c, err := s.locked(key, true, now)
	if err != nil {
		return PublishResult{}, err
	}
	defer s.done(c)

	sec, seq := s.tick(now)
	m.ID = c.nextID(sec)
	var st *stored
	if opts.StoreMessages && opts.MaxBufferLength > 0 { // a buffer of 0 stores nothing
		st = &stored{Message: m, size: int64(len(m.Body)+len(m.ContentType)+len(m.Event)) + MessageOverhead}
		over := len(c.msgs) + 1 - opts.MaxBufferLength
		var freed int64
		for i := 0; i < over && i < len(c.msgs); i++ {
			freed += c.msgs[i].size
		}
		if !s.tryReserve(st.size, freed) {
			return PublishResult{}, ErrInsufficientStorage
		}
		if opts.MessageTimeout > 0 {
			st.expires = now.Add(opts.MessageTimeout)
			if c.nextExpiry.IsZero() || st.expires.Before(c.nextExpiry) {
				c.nextExpiry = st.expires
				s.queueExpiry(c)
			}
		}
		st.minRecipients = opts.MinRecipients
		st.deleteOldest = opts.DeleteOldestReceived
		c.msgs = append(c.msgs, st)
		c.bytes += st.size
		for len(c.msgs) > opts.MaxBufferLength {
			s.removeAt(c, 0, false) // already released by tryReserve
		}
	}
	c.lastID = m.ID
	c.lastUsed = now
	c.channelTimeout = opts.ChannelTimeout
	c.minBuffer = opts.MinBufferLength
	c.opts, c.published = opts, true
	s.published.Add(1)

	if st != nil {
		st.seq = seq
	}
	res := PublishResult{ID: m.ID, Info: c.info(now)}
	res.Delivered = c.subs.Offer(m, seq)
	s.delivered.Add(uint64(res.Delivered))
	if res.Delivered > 0 && st != nil {
		st.received += res.Delivered
		s.afterDelivery(c, st)
	}
	res.Info.Messages = len(c.msgs)
	return res, nil
}

// tick takes a publication's place in the store's order, its Seq, and the
// second of its id. A publication that read the clock and then waited (for
// its channel's lock, or preempted) while another channel's publication
// read the next second could otherwise come after it in Seq order with an
// earlier second; a multiplexed subscriber's compound id, which has one
// second for all its channels, would go back with it, and a resume from it
// would repeat the other channel's message. So the second is the store's
// latest when that is one second ahead of the clock reading (such a race).
// A clock stepped back by more than that gives its own second again
// (nextID keeps each channel's ids in order): holding every channel at the
// latest second until the clock caught up would give an If-Modified-Since
// client (the push module's protocol) one message again and again. Seq
// packs the latest second (high 32 bits) and a count within it (low 32
// bits), advanced by one compare-and-swap, so it only grows (a count past
// 32 bits carries into the second: still in order).
func (s *MemoryStore) tick(now time.Time) (sec int64, seq uint64) {
	clock := uint64(max(now.Unix(), 0))
	for {
		last := s.seq.Load()
		next := last + 1
		if clock > last>>32 {
			next = clock<<32 | 1
		}
		if s.seq.CompareAndSwap(last, next) {
			if latest := next >> 32; latest > clock+1 {
				return int64(clock), next
			}
			return int64(next >> 32), next
		}
	}
}

// nextID assigns the id of a new message in second sec: (sec, 0), or
// (last.Time, last.Tag+1) when the channel's last id, or its tomb's, has
// that second or a later one (the clock went back), so a channel's ids
// never go backwards.
func (c *channel) nextID(sec int64) MessageID {
	if c.lastID.Time >= sec && !c.lastID.IsZero() {
		return MessageID{Time: c.lastID.Time, Tag: c.lastID.Tag + 1}
	}
	return MessageID{Time: sec}
}

// Touch creates the channel if needed and returns its info (publisher PUT).
func (s *MemoryStore) Touch(key string, channelTimeout time.Duration) (ChannelInfo, error) {
	return withRoom(s, func() (ChannelInfo, error) {
		now := s.now()
		c, err := s.locked(key, true, now)
		if err != nil {
			return ChannelInfo{}, err
		}
		defer s.done(c)
		c.lastUsed = now
		c.channelTimeout = channelTimeout
		return c.info(now), nil
	})
}

// Info returns a channel's info (publisher GET), or ErrChannelNotFound.
func (s *MemoryStore) Info(key string) (ChannelInfo, error) {
	now := s.now()
	c, _ := s.locked(key, false, now)
	if c == nil {
		return ChannelInfo{}, ErrChannelNotFound
	}
	defer s.done(c)
	return c.info(now), nil
}

// Delete removes a channel and its messages and ends every subscription
// on it with Deleted. It returns the info from before the deletion, or
// ErrChannelNotFound.
func (s *MemoryStore) Delete(key string) (ChannelInfo, error) {
	now := s.now()
	c, _ := s.locked(key, false, now)
	if c == nil {
		return ChannelInfo{}, ErrChannelNotFound
	}
	info := c.info(now)
	c.subs.EndAll(Deleted)
	s.dropLocked(c)
	c.mu.Unlock()
	s.unmap(c, now)
	return info, nil
}

// Subscribe answers a subscriber.
func (s *MemoryStore) Subscribe(key string, req SubscribeRequest) (SubscribeResult, error) {
	return withRoom(s, func() (SubscribeResult, error) { return s.subscribe(key, req) })
}

func (s *MemoryStore) subscribe(key string, req SubscribeRequest) (SubscribeResult, error) {
	now := s.now()
	c, err := s.locked(key, req.Create, now)
	if err != nil {
		return SubscribeResult{}, err
	}
	if c == nil {
		return SubscribeResult{}, ErrChannelNotFound
	}
	defer s.done(c)
	c.lastRequested = now
	c.lastUsed = now

	var st *stored
	if i := c.start(req.HasCursor, req.Cursor, req.Start); i < len(c.msgs) {
		st = c.msgs[i]
	}

	if c.subs.Len() > 0 {
		switch req.Concurrency {
		case First:
			return SubscribeResult{}, ErrConflict
		case Last:
			c.subs.EndAll(Displaced)
		}
		if req.MaxWaiters > 0 && c.subs.Len() >= req.MaxWaiters {
			return SubscribeResult{}, ErrTooManySubscribers
		}
	}

	if st != nil {
		st.received++
		s.delivered.Add(1)
		s.afterDelivery(c, st)
		return SubscribeResult{Message: st.Message}, nil
	}
	if !req.Wait {
		return SubscribeResult{}, nil
	}
	ms := newMemSub(s, 1, true, 0)
	if s.closing.Load() {
		ms.Close(Shutdown)
		return SubscribeResult{Sub: ms}, nil
	}
	ms.chans[0] = c
	c.subs.Add(&ms.members[0])
	return SubscribeResult{Sub: ms}, nil
}

// start returns the index of the first stored message a subscriber is
// sent: the first after its cursor, or for one without a cursor the one
// its Start names. len(c.msgs) means it waits: nothing is stored, the
// cursor is at or after the newest stored message, or Start is Newest. A
// cursor before every stored message gets the oldest.
func (c *channel) start(hasCursor bool, cursor MessageID, from Start) int {
	n := len(c.msgs)
	switch {
	case n == 0:
		return 0
	case hasCursor:
		i, _ := slices.BinarySearchFunc(c.msgs, cursor, func(m *stored, id MessageID) int {
			if m.ID.After(id) {
				return 1
			}
			return -1
		})
		return i
	case from.Newest:
		return n
	case from.At > 1:
		return min(from.At-1, n-1)
	case from.At < 0:
		return max(n+from.At, 0)
	}
	return 0
}

func (c *channel) info(now time.Time) ChannelInfo {
	req := int64(-1)
	if !c.lastRequested.IsZero() {
		req = int64(now.Sub(c.lastRequested) / time.Second)
	}
	return ChannelInfo{Messages: len(c.msgs), Requested: req, Subscribers: c.subs.Len()}
}

// afterDelivery applies min_message_recipients and
// delete_oldest_received_message to a message that was just delivered.
func (s *MemoryStore) afterDelivery(c *channel, m *stored) {
	if !m.hasRule() {
		return // the common case stays O(1)
	}
	i := slices.Index(c.msgs, m)
	if i < 0 || len(c.msgs) <= c.minBuffer {
		return
	}
	beyondMin := i < len(c.msgs)-c.minBuffer
	if (m.minRecipients > 0 && m.received >= m.minRecipients && beyondMin) || (m.deleteOldest && i == 0) {
		s.removeAt(c, i, true)
	}
}

// removeAt removes message i of a locked channel, releasing its bytes from
// the budget unless the caller already did.
func (s *MemoryStore) removeAt(c *channel, i int, release bool) {
	m := c.msgs[i]
	if i == 0 { // the common case (trimming, expiry): O(1), append reclaims the slot
		c.msgs[0] = nil
		c.msgs = c.msgs[1:]
	} else {
		c.msgs = slices.Delete(c.msgs, i, i+1)
	}
	c.bytes -= m.size
	if release {
		s.release(m.size)
	}
}

// pruneExpired removes expired messages; it is cheap when none is due.
func (s *MemoryStore) pruneExpired(c *channel, now time.Time) {
	if c.nextExpiry.IsZero() || now.Before(c.nextExpiry) {
		return
	}
	var next time.Time
	kept := c.msgs[:0]
	for _, m := range c.msgs {
		if !m.expires.IsZero() && !now.Before(m.expires) {
			c.bytes -= m.size
			s.release(m.size)
			s.expired.Add(1)
			continue
		}
		if !m.expires.IsZero() && (next.IsZero() || m.expires.Before(next)) {
			next = m.expires
		}
		kept = append(kept, m)
	}
	clear(c.msgs[len(kept):])
	c.msgs = kept
	c.nextExpiry = next
}

// dropLocked marks a locked channel deleted and releases what it holds.
func (s *MemoryStore) dropLocked(c *channel) {
	c.deleted = true
	s.release(c.bytes)
	s.channelBytes.Add(-(int64(len(c.key)) + ChannelOverhead))
	c.bytes = 0
	c.msgs = nil
}

// unmap removes a channel that dropLocked marked deleted from the map,
// keeping its last id in a tomb if a new channel under its key could
// otherwise reuse an id (same second, or a clock gone back).
func (s *MemoryStore) unmap(c *channel, now time.Time) {
	s.mu.Lock()
	if s.channels[c.key] == c {
		delete(s.channels, c.key)
		if !c.lastID.IsZero() && c.lastID.Time >= now.Unix() {
			s.tombs[c.key] = c.lastID
		}
	}
	s.mu.Unlock()
}

// pruneTombs forgets the tombs whose second has passed: a new channel's
// first id is later anyway.
func (s *MemoryStore) pruneTombs(now time.Time) {
	sec := now.Unix()
	s.mu.Lock()
	for k, id := range s.tombs {
		if id.Time < sec {
			delete(s.tombs, k)
		}
	}
	s.mu.Unlock()
}

// snapshot returns the current channels; each must be locked and checked
// for deletion before use.
func (s *MemoryStore) snapshot() []*channel {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := make([]*channel, 0, len(s.channels))
	for _, c := range s.channels {
		all = append(all, c)
	}
	return all
}

// Collect removes now what memory pressure would: expired messages and
// every idle channel (no messages, no subscriptions), however recently
// used. It returns the number of channels removed.
func (s *MemoryStore) Collect() int { return s.collect(true) }

// Sweep removes expired messages and timed-out idle channels; the
// background sweeper calls it every second. It returns the number of
// channels removed.
func (s *MemoryStore) Sweep() int { return s.collect(false) }

// Start starts the background sweeper, once a second, if it is not
// running.
func (s *MemoryStore) Start() { s.sweeper.Start(time.Second, func() { s.Sweep() }) }

// ReleaseAll ends every subscription with Shutdown and makes every later
// long-poll end at once: the process is exiting.
func (s *MemoryStore) ReleaseAll() int {
	s.closing.Store(true)
	n := 0
	for _, c := range s.snapshot() {
		c.mu.Lock()
		n += c.subs.EndAll(Shutdown)
		s.done(c)
	}
	return n
}

// Close stops the sweeper and ends every subscription: the store's last
// user is gone.
func (s *MemoryStore) Close() error {
	s.sweeper.Stop()
	s.ReleaseAll()
	return nil
}

// Interface guards
var (
	_ Store     = (*MemoryStore)(nil)
	_ Inspector = (*MemoryStore)(nil)
	_ Budget    = (*MemoryStore)(nil)
	_ Runner    = (*MemoryStore)(nil)
)
