package pushstore

import (
	"cmp"
	"runtime"
	"slices"
	"sync"
)

// End says why a subscription ended, or that it has not.
type End uint8

// The ways a subscription ends from the store's side.
const (
	Open      End = iota // not ended
	Done                 // a one-shot (long-poll) subscription got its message
	Deleted              // a channel of it was deleted (410)
	Displaced            // displaced by `last` concurrency (409)
	Shutdown             // the process is exiting (304, or a stream's close)
	Retry                // the store lost track; the subscriber asks again (304)
	Behind               // a stream fell behind by more than its queue holds
)

// Delivery is one message a subscription is sent, with the position of
// the channel it came from among the subscription's channels.
type Delivery struct {
	Message *Message
	Channel int
	// Seq orders deliveries from several channels by publication: a store
	// gives each publication a greater Seq than the ones it published
	// before. It is 0 where a store cannot order (the handlers ignore it).
	Seq uint64
}

// deliveryOverhead is what a queued delivery costs on top of its body,
// against a stream queue's byte limit.
const deliveryOverhead = 64

func (d Delivery) cost() int64 { return int64(len(d.Message.Body)) + deliveryOverhead }

// Subscription is a subscriber's place on its channels, as Subscribe
// returns it. The store queues what it sends; the subscriber waits on
// Ready and takes everything queued with Take.
type Subscription interface {
	// Ready is signalled when Take has something new: a delivery, or the
	// end of the subscription.
	Ready() <-chan struct{}
	// Take appends what was queued since the last call to buf and returns
	// it, with the subscription's end (Open while it lasts).
	Take(buf []Delivery) ([]Delivery, End)
	// Cancel ends the subscription from the subscriber's side (it left,
	// or timed out). Deliveries queued before it stand: a Take after
	// Cancel returns them. It may be called more than once.
	Cancel()
	// Sent says the subscriber has written everything it took: until
	// then it counts against the queue's limit (see Queue.Sent).
	Sent()
}

// Parker is a Subscription whose subscriber may be handed its deliveries
// in the pushing goroutine while it waits with nothing queued (Queue's
// Park and Unpark).
type Parker interface {
	Park(sink func(Delivery) bool, wake func()) bool
	Unpark()
}

// Queue holds what a subscription has been sent and not yet taken. The
// store pushes under its own locks and never blocks; the subscriber
// waits on Ready. It is the part of Subscription every store shares.
type Queue struct {
	mu     sync.Mutex
	items  []Delivery
	first  [1]Delivery // items' first array: a long-poll never allocates one
	limit  int64       // most bytes of live deliveries held; beyond it the queue ends Behind
	held   int64       // bytes of the deliveries held
	exempt int64       // of held, the backlog's, which the limit does not count
	// sending is the bytes of the deliveries the subscriber took, or a
	// parked write left, and has not written yet (see Sent): a client
	// that takes nothing holds them too.
	sending int64
	once    bool // ends Done with its first delivery (a long-poll)
	end     End
	ready   chan struct{}
	// sink, while the subscriber is parked with nothing queued (see
	// Park), takes each delivery at once instead of the queue.
	sink func(Delivery) bool
	// wake, from Park until Unpark, is called with each signal of Ready.
	wake func()

	// OnBehind, when set, is run in a goroutine of its own when the queue
	// ends Behind: the subscriber may be stuck writing to a client that
	// takes nothing, and not see the end until that write returns.
	OnBehind func()
}

// Init sets q up: a one-shot queue (a long-poll) ends with its first
// delivery; another holds live deliveries the subscriber has not written
// yet, queued or taken, up to limit bytes (bodies plus a small overhead
// each; one more delivery always fits while none is queued), and ends
// Behind when one more would pass it.
func (q *Queue) Init(oneShot bool, limit int64) {
	q.items = q.first[:0]
	q.once = oneShot
	q.limit = limit
	q.ready = make(chan struct{}, 1)
}

// Ready is signalled when Take has something new.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

func (q *Queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
	if q.wake != nil {
		q.wake()
	}
}

// Push offers d. It reports whether the subscription stays open for more:
// false when it ended before, ends with this delivery (one-shot) or ends
// because the subscriber is too far behind (d is then not queued).
// delivered reports whether d was queued (or, to a parked subscriber,
// sent: see Park).
func (q *Queue) Push(d Delivery) (delivered, open bool) { return q.push(d, true) }

// PushQueued is Push, but a parked subscriber is woken to send d itself.
// A store that fans one message out to many subscribers sends it to some
// itself and wakes the others, so that other cores share the writes.
func (q *Queue) PushQueued(d Delivery) (delivered, open bool) { return q.push(d, false) }

// Inline returns how many of n subscribers of one publication the
// publishing goroutine sends to itself (Push), the others being woken
// (PushQueued): all of them on one core, a share per core on several.
func Inline(n int) int {
	p := runtime.GOMAXPROCS(0)
	return (n + p - 1) / p
}

// Fanout pushes one publication to the n subscribers of a channel, in
// turn: the first Inline(n) with Push, the others with PushQueued.
type Fanout struct{ inline, pushed int }

// NewFanout returns the Fanout of a publication to n subscribers.
func NewFanout(n int) Fanout { return Fanout{inline: Inline(n)} }

// Push pushes d to the next subscriber's queue q.
func (f *Fanout) Push(q *Queue, d Delivery) (delivered, open bool) {
	f.pushed++
	return q.push(d, f.pushed <= f.inline)
}

func (q *Queue) push(d Delivery, mayPark bool) (delivered, open bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	cost := d.cost()
	switch {
	case q.end != Open:
		return false, false
	case !q.once && len(q.items) > 0 && q.held-q.exempt+q.sending+cost > q.limit:
		q.end = Behind
		q.signal()
		if q.OnBehind != nil {
			go q.OnBehind()
		}
		return false, false
	}
	if q.sink != nil && mayPark && len(q.items) == 0 {
		if !q.sink(d) {
			q.sink = nil // it kept what it could not send: the subscriber sends it
			q.sending += cost
			q.signal()
		}
		return true, true
	}
	q.sink = nil // queued: the subscriber sends it, and what follows
	q.items = append(q.items, d)
	q.held += cost
	if q.once {
		q.end = Done
	}
	q.signal()
	return true, q.end == Open
}

// Park hands the deliveries to sink, in the pushing goroutine and under
// the queue's lock, from now until Unpark, if nothing is queued and the
// subscription is open (it reports whether it did). sink must not block:
// it sends the delivery or takes it over to be sent later, and returns
// false when it could not send it all, which ends the parking and signals
// Ready (Unpark must still be called). Until Unpark, wake (when not nil)
// is called, under the same lock, each time Ready is signalled: a
// subscriber whose goroutine left while it was parked starts one there.
// It must not block. Only a stream parks.
func (q *Queue) Park(sink func(Delivery) bool, wake func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.once || len(q.items) > 0 || q.end != Open {
		return false
	}
	q.sink, q.wake = sink, wake
	return true
}

// Unpark ends Park: when it returns, neither sink nor wake is running or
// called again.
func (q *Queue) Unpark() {
	q.mu.Lock()
	q.sink, q.wake = nil, nil
	q.mu.Unlock()
}

// AnsweredFrom returns what a one-shot queue was answered with when that
// is one of backlog's deliveries (not a live message pushed while it was
// being registered): the message its store counts as received.
func (q *Queue) AnsweredFrom(backlog []Delivery) (Delivery, bool) {
	d, ok := q.Peek()
	if !ok {
		return d, false
	}
	for _, b := range backlog {
		if b.Message == d.Message {
			return d, true
		}
	}
	return d, false
}

// ByChannel calls f with each run of consecutive deliveries of ds on one
// channel, in order: a backlog, which is in channel order, channel by
// channel.
func ByChannel(ds []Delivery, f func(channel int, run []Delivery)) {
	for i := 0; i < len(ds); {
		j := i + 1
		for j < len(ds) && ds[j].Channel == ds[i].Channel {
			j++
		}
		f(ds[i].Channel, ds[i:j])
		i = j
	}
}

// Preload queues a subscription's backlog, merged with what was pushed
// while it was being registered on its channels, all in Seq order. A
// one-shot queue keeps the first, or the message pushed to it if that
// message's channel has no backlog (the store counted it as sent). The
// backlog does not count against the limit (it is bounded by the
// channels' buffers).
func (q *Queue) Preload(backlog []Delivery) {
	if len(backlog) == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.end != Open && q.end != Done {
		return
	}
	q.sink = nil // the backlog goes first, through the queue
	live := q.items
	merged := append(backlog, live...)
	slices.SortStableFunc(merged, func(a, b Delivery) int { return cmp.Compare(a.Seq, b.Seq) })
	if q.once {
		merged = merged[:1]
		if len(live) > 0 && !slices.ContainsFunc(backlog, func(b Delivery) bool { return b.Channel == live[0].Channel }) {
			// A message pushed while the subscription was being
			// registered was counted as received (its recipient rules
			// may have removed it): it is the answer. The older
			// backlog stays stored, uncounted, for the next poll; only
			// a backlog of the live message's own channel goes first
			// (its store did not count that one: it does not wait on a
			// channel it answers from).
			merged = live[:1]
		}
		q.end = Done
	}
	q.items = merged
	q.held, q.exempt = 0, 0
	for _, d := range merged {
		q.held += d.cost()
	}
	q.exempt = q.held
	q.signal()
}

// Close ends the subscription with why unless it has ended already, and
// reports whether it did.
func (q *Queue) Close(why End) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.end != Open {
		return false
	}
	q.end = why
	q.signal()
	return true
}

// Take appends the queued deliveries to buf and returns it with the end.
func (q *Queue) Take(buf []Delivery) ([]Delivery, End) {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf, q.items...)
	clear(q.items)
	q.items = q.items[:0]
	q.sending += q.held - q.exempt
	q.held, q.exempt = 0, 0
	return buf, q.end
}

// Sent says the subscriber has written all it took: from then on the
// limit counts only what is queued. A subscriber that takes its
// deliveries and writes them calls it after each write.
func (q *Queue) Sent() {
	q.mu.Lock()
	q.sending = 0
	q.mu.Unlock()
}

// Peek returns the first queued delivery, if any, without taking it.
func (q *Queue) Peek() (Delivery, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return Delivery{}, false
	}
	return q.items[0], true
}

// Ended reports whether the subscription has ended.
func (q *Queue) Ended() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.end != Open
}

// Member is one subscription's place on one channel's wait list. A store
// embeds it in its own per-channel record of a subscription.
type Member struct {
	Queue   *Queue // the subscription's queue
	Channel int    // the channel's position among the subscription's channels
	idx     int    // position in the list; -1 when on none
}

// Init sets m up for subscription queue q, on the channel at position
// channel among the subscription's channels, on no list yet.
func (m *Member) Init(q *Queue, channel int) {
	m.Queue, m.Channel, m.idx = q, channel, -1
}

// Listed reports whether m is on a list.
func (m *Member) Listed() bool { return m.idx >= 0 }

// Membership returns m; it makes *Member (and any struct embedding
// Member) a Listed.
func (m *Member) Membership() *Member { return m }

// Listed is what a WaitList holds: a store's record of a subscription on
// a channel.
type Listed interface {
	comparable
	Membership() *Member
}

// WaitList is the subscriptions on one channel, in no order, each removed
// in O(1) through the index its Member keeps. It is not safe for
// concurrent use: the store guards it with the channel's lock.
type WaitList[T Listed] struct {
	items []T
}

// Len returns the number of members.
func (l *WaitList[T]) Len() int { return len(l.items) }

// Add puts x on the list.
func (l *WaitList[T]) Add(x T) {
	x.Membership().idx = len(l.items)
	l.items = append(l.items, x)
}

// Remove takes x off the list and reports whether it was on it.
func (l *WaitList[T]) Remove(x T) bool {
	m := x.Membership()
	i := m.idx
	if i < 0 || i >= len(l.items) || l.items[i] != x {
		return false
	}
	last := len(l.items) - 1
	moved := l.items[last]
	l.items[i] = moved
	moved.Membership().idx = i
	var zero T
	l.items[last] = zero
	l.items = l.items[:last]
	m.idx = -1
	return true
}

// Filter keeps the members for which keep is true, in one pass, and
// takes the others off the list.
func (l *WaitList[T]) Filter(keep func(T) bool) {
	kept := l.items[:0]
	for _, x := range l.items {
		if keep(x) {
			x.Membership().idx = len(kept)
			kept = append(kept, x)
		} else {
			x.Membership().idx = -1
		}
	}
	clear(l.items[len(kept):])
	l.items = kept
}

// Each calls fn for every member.
func (l *WaitList[T]) Each(fn func(T)) {
	for _, x := range l.items {
		fn(x)
	}
}

// Offer pushes m, publication seq, to every member and takes off the
// list those whose subscription ended; it returns how many were sent m.
// It sends m itself to Inline's share of the parked members (Fanout).
func (l *WaitList[T]) Offer(m *Message, seq uint64) (delivered int) {
	f := NewFanout(len(l.items))
	l.Filter(func(x T) bool {
		mb := x.Membership()
		ok, open := f.Push(mb.Queue, Delivery{Message: m, Channel: mb.Channel, Seq: seq})
		if ok {
			delivered++
		}
		return open
	})
	return delivered
}

// EndAll ends every member's subscription with why, empties the list and
// returns how many members it had.
func (l *WaitList[T]) EndAll(why End) int {
	n := len(l.items)
	l.Filter(func(x T) bool {
		x.Membership().Queue.Close(why)
		return false
	})
	return n
}
