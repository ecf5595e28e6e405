package caddypush

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the loop that sends a stream's deliveries (pump): it
// waits for them, writes what was queued together in one batch, sends
// keep-alives, ends the stream on its timeout, and, while the stream is
// parked with nothing to do, lets its goroutine go.

// A parked stream on a connection of its own has nothing to do until a
// publisher's write leaves bytes, a message is queued, the subscription
// ends, its timer fires or its client leaves. Its goroutine then leaves
// (the stream is detached), and whichever of those comes first starts
// another (wake). A goroutine that a queued delivery woke stays for
// detachLinger after it, so a stream that keeps being woken (on several
// cores, the publisher wakes some streams rather than writing to them)
// does not start a goroutine for each message.
const detachLinger = time.Second

// The states of a pump that may detach.
const (
	pumpRunning int32 = iota
	pumpDetached
)

// What the tests read: the streams detached now, and how many times one
// was taken over again (counted when countParked is set, as the parked
// ones).
var detachedStreams, attachedStreams atomic.Int64

// testHookTick, set by the tests, is called by each tick of a stream's
// timer, in the goroutine running the stream (a test makes it panic).
var testHookTick atomic.Pointer[func(*pump)]

// leaving is closed when a stream's client leaves, by the goroutine that
// reads the connection, which then wakes the stream if it is detached.
type leaving struct {
	c    chan struct{}
	pump atomic.Pointer[pump]
}

func newLeaving() *leaving { return &leaving{c: make(chan struct{})} }

// leave says the client left; a detached stream ends in the calling
// goroutine.
func (l *leaving) leave() {
	close(l.c)
	if p := l.pump.Load(); p != nil {
		p.resume()
	}
}

// pump sends a subscription's deliveries through a stream's writer.
type pump struct {
	sw   streamWriter
	sub  pushstore.Subscription
	ids  *runningID // the compound id of a stream of several channels
	gone <-chan struct{}
	buf  []pushstore.Delivery

	// The stream's timer, for the next of its ping, its timeout and the
	// end of its linger (one runtime timer, moved only when the next of
	// them comes earlier than it is set for).
	timer   *time.Timer
	timerAt int64 // when it is set to fire, nanotime; 0: not set
	ping    time.Duration
	pingAt  int64 // nanotime
	timeout time.Duration
	armed   int64        // when a message last restarted the timeout (nanotime)
	sent    atomic.Int64 // when a parked write last sent a message, nanotime
	kick    chan struct{}

	// While it waits with nothing queued, the stream is parked: the
	// goroutine that publishes a message writes it, without blocking,
	// instead of waking this one (a direct stream of one channel on TCP).
	// What such a write leaves, or a message that comes while it is not
	// parked, goes through the queue as before.
	park   pushstore.Parker
	iw     inlineWriter
	sink   func(pushstore.Delivery) bool
	parked bool

	finished bool // finish ran (see contain)

	// What the goroutine that ends the stream runs last (done), and where
	// a panic in the stream is logged (log). A stream that may detach has
	// the wake the queue calls (wakeFn, nil for one that may not), its
	// state, and when a queued delivery last woke it (nanotime).
	done      func()
	log       *zap.Logger
	state     atomic.Int32
	wakeFn    func()
	lastWoken int64
}

// pump sends the deliveries of sub through sw until the subscription ends,
// the timeout passes without a message, or the client leaves: gone is
// closed, or for a connection the stream has to itself, lv (gone is then
// nil: lv's channel is taken). Deliveries queued together are written
// together and flushed once. When the stream is over, it cancels sub and
// runs done. ids is the compound id a stream of several channels starts
// from (its cursors'), nil for one channel.
//
// With lv, the goroutine that runs pump may leave while the stream is
// parked with nothing to do, and pump returns then; the stream goes on in
// a goroutine started when it has something to do again, which runs done
// at its end. Without it, pump returns once the stream is over. A panic in
// whichever goroutine runs the stream ends the stream alone (contain).
func (s *Subscriber) pump(sw streamWriter, sub pushstore.Subscription, ids *runningID, ping time.Duration,
	gone <-chan struct{}, lv *leaving, done func()) {
	if lv != nil {
		gone = lv.c
	}
	p := &pump{sw: sw, sub: sub, ids: ids, gone: gone, ping: ping, timeout: time.Duration(s.Timeout), done: done, log: s.logger}
	if iw, ok := sw.(inlineWriter); ok && p.ids == nil && iw.canInline() {
		p.park, _ = sub.(pushstore.Parker)
		p.iw = iw
		send := func(m *pushstore.Message) bool { return sendBatched(iw, m) }
		if fs, ok := iw.(frameSender); ok {
			send = fs.sendNow
		}
		p.sink = func(d pushstore.Delivery) bool {
			if p.timeout > 0 {
				p.sent.Store(nanotime())
			}
			return send(d.Message)
		}
	}
	if p.park != nil && lv != nil {
		p.wakeFn = p.wake
		lv.pump.Store(p)
	}
	now := nanotime()
	p.armed = now
	if ping > 0 {
		p.pingAt = now + int64(ping)
	}
	if ping > 0 || p.timeout > 0 || p.wakeFn != nil {
		p.kick = make(chan struct{}, 1)
	}
	p.arm(now)
	p.run()
}

// run is the stream's loop, in whichever goroutine runs the stream.
func (p *pump) run() {
	defer p.contain()
	for {
		if p.park != nil && !p.parked && p.park.Park(p.sink, p.wakeFn) {
			p.parked = true
			if countParked {
				parkedStreams.Add(1)
			}
		}
		if p.parked && p.wakeFn != nil && p.detach() {
			return
		}
		var open bool
		select {
		case <-p.sub.Ready():
			open = p.deliver()
		case <-p.kick:
			open = p.tick()
		case <-p.gone:
		}
		if !open {
			p.finish()
			return
		}
	}
}

// deliver writes what the subscription queued, and reports whether the
// stream goes on.
func (p *pump) deliver() bool {
	p.unpark()
	var now int64
	if p.timeout > 0 || p.wakeFn != nil {
		now = nanotime()
	}
	if p.wakeFn != nil {
		p.lastWoken = now
	}
	ds, end := p.sub.Take(p.buf[:0])
	for _, d := range ds {
		if p.ids != nil {
			p.ids.advance(d.Channel, d.Message.ID)
		}
		if p.sw.message(d.Message, p.ids) != nil {
			return false
		}
	}
	// What the stream took counts against its queue until it is written
	// (Sent), and the messages are let go once their frames are in the
	// batch: a client that takes nothing holds its batch, and a queue that
	// then fills ends the stream.
	clear(ds)
	p.buf = ds[:0]
	if len(ds) > 0 && p.timeout > 0 {
		p.armed = now // as nchan: a message restarts the timeout
	}
	if end != pushstore.Open {
		_ = p.sw.end(endOf(end))
		_ = p.sw.flush()
		if end == pushstore.Behind {
			p.sw.closeAfter()
		}
		return false
	}
	if p.sw.flush() != nil {
		return false
	}
	p.sub.Sent()
	return true
}

// tick is the timer's: a ping that is due is sent, a timeout that passed
// ends the stream; it reports whether the stream goes on.
func (p *pump) tick() bool {
	if h := testHookTick.Load(); h != nil {
		(*h)(p)
	}
	now := nanotime()
	p.timerAt = 0
	if p.ping > 0 && now >= p.pingAt {
		p.unpark()
		if p.sw.ping() != nil || p.sw.flush() != nil {
			return false
		}
		p.sub.Sent() // the flush sent what a parked write left
		// The next ping, and with it a WebSocket's check for this one's
		// pong, comes a whole interval after this one went out: a ping
		// held back by a blocked write leaves the client no less time.
		p.pingAt = nanotime() + int64(p.ping)
	}
	if p.timeout > 0 && now >= p.timeoutAt() {
		p.unpark()
		_ = p.sw.end(endTimeout)
		_ = p.sw.flush()
		return false
	}
	p.arm(now)
	return true
}

// timeoutAt is when the timeout passes: a message sent restarts it, by
// the stream or by a parked write.
func (p *pump) timeoutAt() int64 {
	return max(p.armed, p.sent.Load()) + int64(p.timeout)
}

// arm sets the timer for the next of the ping, the timeout and the end of
// the linger, if any is ahead.
func (p *pump) arm(now int64) {
	var next int64
	if p.ping > 0 {
		next = p.pingAt
	}
	if p.timeout > 0 {
		next = earliest(next, p.timeoutAt())
	}
	if p.wakeFn != nil && p.lastWoken > 0 && p.lastWoken+int64(detachLinger) > now {
		next = earliest(next, p.lastWoken+int64(detachLinger))
	}
	if next == 0 || p.timerAt > now && p.timerAt <= next {
		return // none, or it fires first (and tick sets it again)
	}
	p.timerAt = next
	d := time.Duration(max(next-now, 0))
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.fire)
		return
	}
	p.timer.Reset(d)
}

// earliest is the earlier of two times, of which a zero one is none.
func earliest(a, b int64) int64 {
	if a == 0 || b < a {
		return b
	}
	return a
}

// fire is the timer's function, in a goroutine of the runtime's, which
// runs a detached stream.
func (p *pump) fire() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
	p.resume()
}

// detach lets the goroutine go, unless a queued delivery woke it less
// than detachLinger ago; it reports whether it did (the caller returns).
// Whatever came before the state says detached is seen here; whatever
// comes after it finds the stream detached and wakes it.
func (p *pump) detach() bool {
	now := nanotime()
	if p.lastWoken > 0 && now-p.lastWoken < int64(detachLinger) {
		p.arm(now)
		return false
	}
	if p.buf != nil && cap(p.buf) > 16 {
		p.buf = nil // an idle stream keeps no large buffer
	}
	p.iw.idle()
	if countParked {
		detachedStreams.Add(1)
	}
	p.state.Store(pumpDetached)
	// Nothing of p is written by this goroutine from here on but
	// through the state: a wake may have started another already.
	if len(p.sub.Ready()) == 0 && len(p.kick) == 0 && !closed(p.gone) {
		return true
	}
	if !p.state.CompareAndSwap(pumpDetached, pumpRunning) {
		return true // a wake started the stream's next goroutine
	}
	if countParked {
		detachedStreams.Add(-1)
	}
	return false
}

// wake starts a goroutine for a detached stream; the queue calls it when
// it signals Ready, from any goroutine, and it does not block.
func (p *pump) wake() {
	if p.attach() {
		go p.run()
	}
}

// resume runs a detached stream in the calling goroutine, which has
// nothing else to do: the timer's, or the one that saw the client leave.
func (p *pump) resume() {
	if p.attach() {
		p.run()
	}
}

// attach takes a detached stream over, and reports whether it did.
func (p *pump) attach() bool {
	if !p.state.CompareAndSwap(pumpDetached, pumpRunning) {
		return false
	}
	if countParked {
		detachedStreams.Add(-1)
		attachedStreams.Add(1)
	}
	return true
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (p *pump) unpark() {
	if p.parked {
		p.park.Unpark()
		p.parked = false
		if countParked {
			parkedStreams.Add(-1)
		}
	}
}

// finish ends the stream: the parking first, before the subscription is
// cancelled and the connection closed.
func (p *pump) finish() {
	p.finished = true
	p.unpark()
	if p.timer != nil {
		p.timer.Stop()
	}
	p.sub.Cancel()
	if p.done != nil {
		p.done()
	}
}

// contain keeps a panic in the goroutine running the stream to the stream:
// most of them (a detached stream's, a WebSocket's) are no handler's, and
// a panic that left them would end the process with every connection in
// it. As net/http does for a handler, it logs the panic with its stack;
// then it ends the stream without writing to it again (its connection is
// closed, its subscription cancelled), unless the panic was in its end.
func (p *pump) contain() {
	r := recover()
	if r == nil {
		return
	}
	log := p.log
	if log == nil {
		log = zap.NewNop() // a pump made outside a provisioned handler
	}
	log.Error("panic in a stream; the stream ends", zap.Any("panic", r), zap.Stack("stack"))
	if p.finished {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic ending a stream", zap.Any("panic", r))
		}
	}()
	p.sw.closeAfter()
	p.finish()
}

// clockStart anchors nanotime.
var clockStart = time.Now()

// nanotime is the stream timers' clock: nanoseconds on the monotonic
// clock since the process started, plus one (0 means none). A step of
// the wall clock (a settime, an NTP step) does not move it: it would end
// streams early with 408, hold their pings back, or end a WebSocket whose
// pong seemed older than its ping.
func nanotime() int64 { return int64(time.Since(clockStart)) + 1 }
