package caddypush

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file holds the protocol's state machine (PROTOCOL.md sections 2, 4
// and 5): channels, message queues and ids, buffer and expiry rules, the
// memory budget and the waiter lists. It knows nothing of HTTP or Caddy.

// Errors the store answers with; the handlers map each to a status.
var (
	// ErrInsufficientStorage means the store is over its byte budget even
	// after collecting expired messages and empty channels (507).
	ErrInsufficientStorage = errors.New("channel store is over max_reserved_memory")
	// ErrChannelNotFound means the channel does not exist and the request
	// may not create it.
	ErrChannelNotFound = errors.New("channel not found")
	// ErrConflict means `first` concurrency refused a second waiter (409).
	ErrConflict = errors.New("channel already has a waiting subscriber")
	// ErrTooManySubscribers means max_channel_subscribers was reached (403).
	ErrTooManySubscribers = errors.New("channel has reached max_channel_subscribers")
)

// Accounting overheads, in bytes, charged against max_reserved_memory on top
// of the bytes a message or channel key holds. They approximate the Go
// structures that hold them (struct, slice slot, map entry).
const (
	messageOverhead = 128
	channelOverhead = 320
)

// DefaultChannelTimeout is how long an empty channel lives after its last
// use when no publisher has set channel_timeout on it.
const DefaultChannelTimeout = time.Hour

// Concurrency is how a subscriber location treats a channel that already
// has waiters (PROTOCOL.md 4.3).
type Concurrency uint8

// The concurrency modes of push_subscriber_concurrency.
const (
	Broadcast Concurrency = iota
	First
	Last
)

// WakeReason says why a parked waiter was released.
type WakeReason uint8

// The ways a long-poll wait ends from the store's side.
const (
	WakeMessage   WakeReason = iota // a message was published (200)
	WakeDeleted                     // the channel was deleted (410)
	WakeDisplaced                   // displaced by `last` concurrency (409)
	WakeShutdown                    // the process is exiting (304)
	WakeRetry                       // the store lost track; the client asks again (304)
)

// Wake is what a parked waiter receives.
type Wake struct {
	Reason  WakeReason
	Message *Message // set for WakeMessage
}

// Message is one stored (or broadcast) message. Its exported fields never
// change after publication, so it is shared by every response that sends it.
type Message struct {
	ID          MessageID
	Body        []byte
	ContentType string // "" when the publisher sent none

	wire wireOnce // response headers, formatted once for every delivery

	expires       time.Time // zero: never
	minRecipients int
	deleteOldest  bool
	received      int
	size          int64
}

// ChannelInfo is the channel information of PROTOCOL.md 3.1.
type ChannelInfo struct {
	Messages    int   // stored, unexpired messages
	Requested   int64 // seconds since a subscriber last asked; -1 = never
	Subscribers int   // waiters
}

// PublishOptions are the publisher location's message settings; they are
// stored with each message they apply to.
type PublishOptions struct {
	StoreMessages        bool
	MaxBufferLength      int
	MinBufferLength      int
	MinRecipients        int
	DeleteOldestReceived bool
	MessageTimeout       time.Duration // 0: never expires
	ChannelTimeout       time.Duration
}

// PublishResult is the outcome of a publication.
type PublishResult struct {
	ID MessageID
	// Info has the waiter count from before the broadcast and the stored
	// message count after trimming.
	Info ChannelInfo
	// Delivered is how many waiters received the message.
	Delivered int
}

// SubscribeRequest describes one subscriber GET.
type SubscribeRequest struct {
	Cursor      MessageID // the id the client last received
	HasCursor   bool      // the request carried a cursor header
	StartNewest bool      // first_message newest
	Create      bool      // the request may create the channel
	Wait        bool      // long-poll: park when nothing is there yet
	Concurrency Concurrency
	MaxWaiters  int // 0: unlimited
}

// SubscribeResult is the outcome of a subscriber GET: an immediate message,
// a parked waiter, or neither (an interval-poll with nothing new).
type SubscribeResult struct {
	Message *Message
	Waiter  *Waiter
}

// Waiter is a parked long-poll request. Exactly one Wake is sent on C,
// unless the waiter is cancelled first.
type Waiter struct {
	C   chan Wake
	ch  *channel
	idx int        // position in ch.waiters; -1 once released
	rw  *redisWait // the Redis store's state; nil in the memory store
}

// ChannelStore is what the handlers need from a channel store; the
// in-memory MemoryStore implements it.
type ChannelStore interface {
	Publish(key string, body []byte, contentType string, opts PublishOptions) (PublishResult, error)
	Touch(key string, channelTimeout time.Duration) (ChannelInfo, error)
	Info(key string) (ChannelInfo, error)
	Delete(key string) (ChannelInfo, error)
	Subscribe(key string, req SubscribeRequest) (SubscribeResult, error)
	Cancel(w *Waiter)
}

// channel is one named queue with its waiters; mu guards every field.
type channel struct {
	key            string
	mu             sync.Mutex
	msgs           []*Message
	waiters        []*Waiter
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

	maxBytes atomic.Int64
	used     atomic.Int64
	closing  atomic.Bool

	published atomic.Uint64 // messages accepted by Publish
	delivered atomic.Uint64 // messages handed to subscribers (immediate or woken)
	expired   atomic.Uint64 // stored messages removed by message_timeout

	sweeper ticker
	visits  atomic.Int64 // channels collect has looked at, for tests
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
	cost := int64(len(key)) + channelOverhead
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
		minBuffer:      1,
		bytes:          cost,
	}
	if id, ok := s.tombs[key]; ok {
		c.lastID = id
		delete(s.tombs, key)
	}
	s.channels[key] = c
	return c, nil
}

// withRoom runs op, and when the store refuses it for lack of room,
// collects expired messages and idle channels and runs it once more
// (PROTOCOL.md 3). It must be called with no channel locked.
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
// channel does not exist and create is off.
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
func (s *MemoryStore) Publish(key string, body []byte, contentType string, opts PublishOptions) (PublishResult, error) {
	return withRoom(s, func() (PublishResult, error) { return s.publish(key, body, contentType, opts) })
}

func (s *MemoryStore) publish(key string, body []byte, contentType string, opts PublishOptions) (PublishResult, error) {
	now := s.now()
	c, err := s.locked(key, true, now)
	if err != nil {
		return PublishResult{}, err
	}
	defer s.done(c)

	m := &Message{ID: c.nextID(now), Body: body, ContentType: contentType}
	if opts.StoreMessages && opts.MaxBufferLength > 0 { // a buffer of 0 stores nothing
		m.size = int64(len(body)+len(contentType)) + messageOverhead
		over := len(c.msgs) + 1 - opts.MaxBufferLength
		var freed int64
		for i := 0; i < over && i < len(c.msgs); i++ {
			freed += c.msgs[i].size
		}
		if !s.tryReserve(m.size, freed) {
			return PublishResult{}, ErrInsufficientStorage
		}
		if opts.MessageTimeout > 0 {
			m.expires = now.Add(opts.MessageTimeout)
			if c.nextExpiry.IsZero() || m.expires.Before(c.nextExpiry) {
				c.nextExpiry = m.expires
				s.queueExpiry(c)
			}
		}
		m.minRecipients = opts.MinRecipients
		m.deleteOldest = opts.DeleteOldestReceived
		c.msgs = append(c.msgs, m)
		c.bytes += m.size
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

	res := PublishResult{ID: m.ID, Info: c.info(now)}
	res.Delivered = len(c.waiters)
	c.wakeAll(Wake{Reason: WakeMessage, Message: m})
	s.delivered.Add(uint64(res.Delivered))
	if res.Delivered > 0 && m.size > 0 { // stored
		m.received += res.Delivered
		s.afterDelivery(c, m)
	}
	res.Info.Messages = len(c.msgs)
	return res, nil
}

// nextID assigns the id of a new message: (now, 0), or (last.Time,
// last.Tag+1) when the last id has the same second or a later one, so ids
// never go backwards even when the clock does.
func (c *channel) nextID(now time.Time) MessageID {
	sec := now.Unix()
	if c.lastID.Time >= sec && c.lastID != (MessageID{}) {
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

// Delete removes a channel and its messages and sends every waiter a
// WakeDeleted. It returns the info from before the deletion, or
// ErrChannelNotFound.
func (s *MemoryStore) Delete(key string) (ChannelInfo, error) {
	now := s.now()
	c, _ := s.locked(key, false, now)
	if c == nil {
		return ChannelInfo{}, ErrChannelNotFound
	}
	info := c.info(now)
	c.wakeAll(Wake{Reason: WakeDeleted})
	s.dropLocked(c)
	c.mu.Unlock()
	s.unmap(c, now)
	return info, nil
}

// Subscribe answers a subscriber GET (PROTOCOL.md section 4).
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

	cursor := req.Cursor
	if !req.HasCursor && req.StartNewest && len(c.msgs) > 0 {
		cursor = c.msgs[len(c.msgs)-1].ID
	}
	m := c.find(cursor)

	if len(c.waiters) > 0 {
		switch req.Concurrency {
		case First:
			return SubscribeResult{}, ErrConflict
		case Last:
			c.wakeAll(Wake{Reason: WakeDisplaced})
		}
		if req.MaxWaiters > 0 && len(c.waiters) >= req.MaxWaiters {
			return SubscribeResult{}, ErrTooManySubscribers
		}
	}

	if m != nil {
		m.received++
		s.delivered.Add(1)
		s.afterDelivery(c, m)
		return SubscribeResult{Message: m}, nil
	}
	if !req.Wait {
		return SubscribeResult{}, nil
	}
	w := &Waiter{C: make(chan Wake, 1), ch: c}
	if s.closing.Load() {
		w.idx = -1
		w.C <- Wake{Reason: WakeShutdown}
		return SubscribeResult{Waiter: w}, nil
	}
	w.idx = len(c.waiters)
	c.waiters = append(c.waiters, w)
	return SubscribeResult{Waiter: w}, nil
}

// Cancel removes a waiter whose client went away or timed out. It is a
// no-op when the waiter was already released.
func (s *MemoryStore) Cancel(w *Waiter) {
	c := w.ch
	c.mu.Lock()
	defer s.done(c)
	if w.idx < 0 {
		return
	}
	last := len(c.waiters) - 1
	moved := c.waiters[last]
	c.waiters[w.idx] = moved
	moved.idx = w.idx
	c.waiters[last] = nil
	c.waiters = c.waiters[:last]
	w.idx = -1
	c.lastUsed = s.now()
}

// find returns the first stored message after cursor (PROTOCOL.md 4.1), or
// nil when the client must wait.
func (c *channel) find(cursor MessageID) *Message {
	n := len(c.msgs)
	if n == 0 || !c.msgs[n-1].ID.After(cursor) {
		return nil
	}
	i, _ := slices.BinarySearchFunc(c.msgs, cursor, func(m *Message, id MessageID) int {
		if m.ID.After(id) {
			return 1
		}
		return -1
	})
	return c.msgs[i]
}

func (c *channel) info(now time.Time) ChannelInfo {
	req := int64(-1)
	if !c.lastRequested.IsZero() {
		req = int64(now.Sub(c.lastRequested) / time.Second)
	}
	return ChannelInfo{Messages: len(c.msgs), Requested: req, Subscribers: len(c.waiters)}
}

// wakeAll releases every waiter with w.
func (c *channel) wakeAll(w Wake) {
	for i, wt := range c.waiters {
		wt.idx = -1
		wt.C <- w // buffered, and each waiter is woken once
		c.waiters[i] = nil
	}
	c.waiters = c.waiters[:0]
}

// afterDelivery applies min_message_recipients and
// delete_oldest_received_message to a message that was just delivered.
func (s *MemoryStore) afterDelivery(c *channel, m *Message) {
	if m.minRecipients == 0 && !m.deleteOldest {
		return // no rule applies: the common case stays O(1)
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
		if c.lastID != (MessageID{}) && c.lastID.Time >= now.Unix() {
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
		if len(c.msgs) == 0 && len(c.waiters) == 0 && (force || !now.Before(c.lastUsed.Add(c.channelTimeout))) {
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

// Sweep removes expired messages and timed-out empty channels; the
// background sweeper calls it every second.
func (s *MemoryStore) Sweep() int { return s.collect(false) }

// StartSweeper starts the background sweeper if it is not running.
func (s *MemoryStore) StartSweeper(every time.Duration) { s.sweeper.start(every, func() { s.Sweep() }) }

// StopSweeper stops the background sweeper and waits for it to end.
func (s *MemoryStore) StopSweeper() { s.sweeper.halt() }

// ReleaseAll sends WakeShutdown to every waiter and makes every later
// long-poll return at once: the process is exiting.
func (s *MemoryStore) ReleaseAll() int {
	s.closing.Store(true)
	all := s.snapshot()
	n := 0
	for _, c := range all {
		c.mu.Lock()
		n += len(c.waiters)
		c.wakeAll(Wake{Reason: WakeShutdown})
		s.done(c)
	}
	return n
}

// Stats is a snapshot of the store's size and lifetime counters.
type Stats struct {
	Channels int   `json:"channels"`
	Messages int   `json:"messages"`
	Waiters  int   `json:"waiters"`
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	// ChannelBytes is the part of Bytes the channels themselves take (their
	// keys and overhead), messages apart: channels that subscribers create
	// and wait on hold it too.
	ChannelBytes int64  `json:"channel_bytes"`
	Published    uint64 `json:"published"`
	Delivered    uint64 `json:"delivered"`
	Expired      uint64 `json:"expired"`
}

// Stats returns a snapshot of the store.
func (s *MemoryStore) Stats() (Stats, error) {
	now := s.now()
	all := s.snapshot()
	st := Stats{
		Channels: len(all), Bytes: s.used.Load(), MaxBytes: s.maxBytes.Load(),
		Published: s.published.Load(), Delivered: s.delivered.Load(),
	}
	for _, c := range all {
		st.ChannelBytes += int64(len(c.key)) + channelOverhead
		c.mu.Lock()
		s.pruneExpired(c, now)
		st.Messages += len(c.msgs)
		st.Waiters += len(c.waiters)
		s.done(c)
	}
	st.Expired = s.expired.Load()
	return st, nil
}

// ChannelStat describes one channel for the admin API.
type ChannelStat struct {
	Key           string `json:"key"`
	Messages      int    `json:"messages"`
	Waiters       int    `json:"waiters"`
	LastRequested int64  `json:"last_requested"` // seconds ago; -1 = never
	Bytes         int64  `json:"bytes"`
}

// Channels returns up to limit channels whose key starts with prefix and
// sorts after `after`, in key order, and whether more follow.
func (s *MemoryStore) Channels(prefix, after string, limit int) ([]ChannelStat, bool, error) {
	now := s.now()
	var picked []*channel
	for _, c := range s.snapshot() {
		if strings.HasPrefix(c.key, prefix) && c.key > after {
			picked = append(picked, c)
		}
	}
	slices.SortFunc(picked, func(a, b *channel) int { return strings.Compare(a.key, b.key) })
	more := len(picked) > limit
	if more {
		picked = picked[:limit]
	}
	out := make([]ChannelStat, 0, len(picked))
	for _, c := range picked {
		c.mu.Lock()
		if !c.deleted {
			s.pruneExpired(c, now)
			out = append(out, c.stat(now))
		}
		s.done(c)
	}
	return out, more, nil
}

// ChannelStatOf describes one channel, or answers ErrChannelNotFound.
func (s *MemoryStore) ChannelStatOf(key string) (ChannelStat, error) {
	now := s.now()
	c, _ := s.locked(key, false, now)
	if c == nil {
		return ChannelStat{}, ErrChannelNotFound
	}
	defer s.done(c)
	return c.stat(now), nil
}

// stat describes a locked channel for the admin API.
func (c *channel) stat(now time.Time) ChannelStat {
	i := c.info(now)
	return ChannelStat{Key: c.key, Messages: i.Messages, Waiters: i.Subscribers, LastRequested: i.Requested, Bytes: c.bytes}
}

// LastPublishOptions returns the options of a channel's last publication,
// or def when the channel has none (the admin API publishes with them).
func (s *MemoryStore) LastPublishOptions(key string, def PublishOptions) (PublishOptions, error) {
	c, _ := s.locked(key, false, s.now())
	if c == nil {
		return def, nil
	}
	defer s.done(c)
	if !c.published {
		return def, nil
	}
	return c.opts, nil
}

// Destruct stops the sweeper and releases every waiter; the store's last
// user is gone (caddy.Destructor).
func (s *MemoryStore) Destruct() error {
	s.StopSweeper()
	s.ReleaseAll()
	return nil
}

// Interface guards
var _ ChannelStore = (*MemoryStore)(nil)
