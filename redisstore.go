package caddypush

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisStore is the channel store in Redis (see redisscripts.go for the
// data). The protocol's state is in Redis; this process holds only its own
// parked long-polls, which Redis pub/sub notifications wake. It is safe for
// concurrent use.
type RedisStore struct {
	client   redis.UniversalClient
	prefix   string
	notes    string // the pub/sub channel of notifications
	instance string // this store's id in waiter counts and notifications
	logger   *zap.Logger
	skew     func() time.Duration // tests move the clock; nil: none

	maxBytes atomic.Int64 // 0: no budget of ours
	sampled  atomic.Bool  // usedMem holds a sample
	usedMem  atomic.Int64 // Redis used_memory at the last sample
	since    atomic.Int64 // bytes published since that sample
	down     atomic.Bool
	closing  atomic.Bool

	// subscribed says the notes subscription is confirmed and not known to
	// be broken; epoch counts its confirmations. A waiter registered while
	// unsubscribed, or under an older epoch, may have missed notifications
	// and is rechecked in Redis once the subscription is back.
	subscribed atomic.Bool
	epoch      atomic.Uint64

	published atomic.Uint64
	delivered atomic.Uint64
	expired   atomic.Uint64

	mu    sync.Mutex
	local map[string]*localChannel

	// recent holds the newest ids this instance has seen per channel (its
	// own publications and every notification) for a few seconds. A
	// publication passes its channel's as the floor of the new id, so ids
	// continue after the ones subscribers hold even when Redis has lost
	// the channel (a restart without persistence) within their second.
	recentMu sync.Mutex
	recent   map[string]recentID

	ctx        context.Context
	cancel     context.CancelFunc
	started    sync.Once
	pubsub     *redis.PubSub // set by connect
	listenDone chan struct{} // closed when the listener ends

	sweeper ticker
}

// localChannel is this process's part of a channel: its parked waiters,
// and the notifications received while some waiter's Subscribe call has
// not yet learned its gen.
type localChannel struct {
	waiters []*Waiter
	pending int
	notes   []note
	ct      time.Duration // channel_timeout, for keepalives
	kept    time.Time     // last keepalive
}

// recentID is an id seen, and when it was seen.
type recentID struct {
	id   MessageID
	seen time.Time
}

// recentFor is how long an id stays in RedisStore.recent: longer than a
// second of Redis's clock, with room for the instances' clocks to differ.
const recentFor = 3 * time.Second

// remember records id as seen on a channel.
func (s *RedisStore) remember(key string, id MessageID) {
	s.recentMu.Lock()
	if r, ok := s.recent[key]; !ok || id.After(r.id) {
		s.recent[key] = recentID{id, time.Now()}
	}
	s.recentMu.Unlock()
}

// floor returns the newest id recently seen on a channel, "time:tag", or
// "" when none was.
func (s *RedisStore) floor(key string) string {
	s.recentMu.Lock()
	r, ok := s.recent[key]
	s.recentMu.Unlock()
	if !ok {
		return ""
	}
	return r.id.String()
}

// forgetRecent drops the ids seen longer ago than recentFor.
func (s *RedisStore) forgetRecent(now time.Time) {
	s.recentMu.Lock()
	for k, r := range s.recent {
		if now.Sub(r.seen) > recentFor {
			delete(s.recent, k)
		}
	}
	s.recentMu.Unlock()
}

// redisWait is a waiter's Redis-store state; the store's mu guards it.
type redisWait struct {
	key     string
	gen     int64
	cursor  string // the sorted-set score it waits after
	pending bool   // its Subscribe call has not returned yet
	idx     int    // in localChannel.waiters; -1 once released
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
	id      string   // of a message: "time:tag"
	payload string   // of a message: content type "\n" body
	msg     *Message // built from id and payload when a waiter is here
}

func (n note) wake() Wake {
	switch n.kind {
	case 'm':
		return Wake{Reason: WakeMessage, Message: n.msg}
	case 'd':
		return Wake{Reason: WakeDeleted}
	}
	return Wake{Reason: WakeDisplaced}
}

// redisCallTimeout bounds calls made outside a request (cancels, sweeps,
// rechecks); request calls are bounded by the client's read timeout.
const redisCallTimeout = 5 * time.Second

var setRedisLogger sync.Once

func newRedisStore(client redis.UniversalClient, prefix string, maxBytes int64, logger *zap.Logger) *RedisStore {
	setRedisLogger.Do(func() { redis.SetLogger(redisLog{caddyLogger: logger}) })
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &RedisStore{
		client: client, prefix: prefix, notes: prefix + "notes", instance: hex.EncodeToString(id[:]),
		logger: logger, local: make(map[string]*localChannel), recent: make(map[string]recentID),
		ctx: ctx, cancel: cancel,
		listenDone: make(chan struct{}),
	}
	s.maxBytes.Store(maxBytes)
	return s
}

// connect checks Redis, saying whether it is up, and starts the
// notification listener. It runs once, when the app starts: a config that
// is only validated opens no connection and starts no goroutine.
func (s *RedisStore) connect() {
	pctx, pcancel := context.WithTimeout(s.ctx, time.Second)
	if err := s.client.Ping(pctx).Err(); err != nil {
		s.down.Store(true)
		s.logger.Warn("redis not reachable yet; publishers get 503 until it is", zap.Error(err))
	} else {
		s.logger.Info("redis store connected", zap.String("instance", s.instance))
	}
	pcancel()
	// Wait (briefly) for the subscription to be confirmed: a publication
	// made before it would wake nobody here. Waiters that parked before
	// the confirmation (the HTTP app may start first) are rechecked then.
	s.pubsub = s.client.Subscribe(s.ctx, s.notes)
	sctx, scancel := context.WithTimeout(s.ctx, 2*time.Second)
	msg, err := s.pubsub.Receive(sctx)
	scancel()
	if _, ok := msg.(*redis.Subscription); ok && err == nil {
		s.resubscribed()
	}
	go s.listen()
}

// keys returns a channel's keys, in the order the scripts take them.
func (s *RedisStore) keys(key string) []string {
	tag := s.prefix + "{" + key + "}:"
	return []string{tag + "m", tag + "q", tag + "d", tag + "e", tag + "x", tag + "w", tag + "z"}
}

func (s *RedisStore) skewArg() int64 {
	if s.skew == nil {
		return 0
	}
	return s.skew().Milliseconds()
}

func keyHeader(key string) string { return strconv.Itoa(len(key)) + " " + key }

func keyCost(key string) int64 { return int64(len(key)) + channelOverhead }

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fail classifies an error of a Redis call: Redis out of memory is
// ErrInsufficientStorage; an unreachable, loading or failing-over Redis is
// an *UnavailableError (logged once until Redis answers again); any other
// error reply is a plain error (500).
func (s *RedisStore) fail(err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "OOM "):
			return ErrInsufficientStorage
		case !hasAnyPrefix(msg, "LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY"):
			return fmt.Errorf("redis store: %w", err)
		}
	}
	if s.down.CompareAndSwap(false, true) {
		s.logger.Error("redis unavailable; answering 503 until it returns", zap.Error(err))
	}
	return &UnavailableError{Backend: "redis", Err: err}
}

// up notes that Redis answered.
func (s *RedisStore) up() {
	if s.down.Load() && s.down.CompareAndSwap(true, false) {
		s.logger.Info("redis available again")
	}
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// run runs a script on a channel's keys. Every script answers a list; an
// answer of another shape is this program's error, not Redis's, so it is
// returned as a plain error and says nothing about Redis's availability.
func (s *RedisStore) run(ctx context.Context, sc *redis.Script, key string, args ...any) ([]any, error) {
	v, err := sc.Run(ctx, s.client, s.keys(key), append([]any{s.skewArg()}, args...)...).Result()
	if err != nil {
		return nil, s.fail(err)
	}
	s.up()
	res, ok := v.([]any)
	if !ok || len(res) == 0 {
		return nil, fmt.Errorf("redis store: script answered %T %v, want a list", v, v)
	}
	return res, nil
}

func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return ""
}

func num(v any) int64 {
	switch v := v.(type) {
	case int64:
		return v
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return 0
}

// parseID reads "time:tag".
func parseID(v string) MessageID {
	t, g, _ := strings.Cut(v, ":")
	tm, _ := strconv.ParseInt(t, 10, 64)
	tag, _ := strconv.ParseInt(g, 10, 64)
	return MessageID{Time: tm, Tag: tag}
}

// newMessage builds a message from its stored payload, content type "\n" body.
func newMessage(id MessageID, payload string) *Message {
	ct, body, _ := strings.Cut(payload, "\n")
	return &Message{ID: id, Body: []byte(body), ContentType: ct}
}

// SetMaxBytes sets the budget on Redis's used_memory; 0 is none.
func (s *RedisStore) SetMaxBytes(n int64) { s.maxBytes.Store(n) }

// MaxBytes returns the budget.
func (s *RedisStore) MaxBytes() int64 { return s.maxBytes.Load() }

// reserve refuses a publication that would take Redis's used_memory past
// the budget. used_memory is sampled by the sweeper every second, and here
// whenever this instance's publications since the last sample reach a
// quarter of the headroom it left: Redis spends more than the message's
// bytes (buffers, replication, pub/sub), and the samples come closer
// together as the budget fills.
func (s *RedisStore) reserve(ctx context.Context, size int64) error {
	limit := s.maxBytes.Load()
	if limit <= 0 {
		return nil
	}
	if headroom := limit - s.usedMem.Load(); !s.sampled.Load() || s.since.Load()+size > headroom/4 {
		if err := s.sampleMemory(ctx); err != nil {
			return err
		}
		if s.usedMem.Load()+size > limit {
			return ErrInsufficientStorage
		}
	}
	s.since.Add(size)
	return nil
}

// sampleMemory reads used_memory, summed over a Cluster's masters.
func (s *RedisStore) sampleMemory(ctx context.Context) error {
	var total atomic.Int64
	each := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total.Add(n)
			}
		}
		return nil
	}
	if err := s.eachNode(ctx, each); err != nil {
		return s.fail(err)
	}
	s.up()
	s.usedMem.Store(total.Load())
	s.since.Store(0)
	s.sampled.Store(true)
	return nil
}

// eachNode runs fn on every master (one, unless this is a Cluster).
func (s *RedisStore) eachNode(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unsupported redis client %T", s.client)
}

// encodeOptions stores a publication's settings for LastPublishOptions.
func encodeOptions(o PublishOptions) string {
	return fmt.Sprintf("%d %d %d %d %d %d %d", b01(o.StoreMessages), o.MaxBufferLength, o.MinBufferLength,
		o.MinRecipients, b01(o.DeleteOldestReceived), o.MessageTimeout.Milliseconds(), o.ChannelTimeout.Milliseconds())
}

func decodeOptions(v string, def PublishOptions) PublishOptions {
	var store, del int
	var msgMs, chMs int64
	o := def
	if _, err := fmt.Sscanf(v, "%d %d %d %d %d %d %d", &store, &o.MaxBufferLength, &o.MinBufferLength,
		&o.MinRecipients, &del, &msgMs, &chMs); err != nil {
		return def
	}
	o.StoreMessages, o.DeleteOldestReceived = store == 1, del == 1
	o.MessageTimeout, o.ChannelTimeout = time.Duration(msgMs)*time.Millisecond, time.Duration(chMs)*time.Millisecond
	return o
}

// Publish stores (unless store_messages is off) and broadcasts a message
// to the waiters of every instance.
func (s *RedisStore) Publish(key string, body []byte, contentType string, opts PublishOptions) (PublishResult, error) {
	ctx := s.ctx
	if err := s.reserve(ctx, int64(len(body)+len(contentType))+messageOverhead); err != nil {
		return PublishResult{}, err
	}
	payload := make([]byte, 0, len(contentType)+1+len(body))
	payload = append(append(append(payload, contentType...), '\n'), body...)
	res, err := s.run(ctx, redisPublish, key, b01(opts.StoreMessages && opts.MaxBufferLength > 0),
		opts.MaxBufferLength, opts.MinBufferLength, opts.MinRecipients, b01(opts.DeleteOldestReceived),
		opts.MessageTimeout.Milliseconds(), opts.ChannelTimeout.Milliseconds(), payload, encodeOptions(opts),
		s.notes, keyHeader(key), keyCost(key), s.floor(key))
	if err != nil {
		return PublishResult{}, err
	}
	id := parseID(str(res[0]))
	s.remember(key, id)
	waiting := int(num(res[2]))
	s.published.Add(1)
	s.expired.Add(uint64(num(res[5])))
	return PublishResult{
		ID:        id,
		Info:      ChannelInfo{Messages: int(num(res[3])), Requested: num(res[4]), Subscribers: waiting},
		Delivered: waiting,
	}, nil
}

// Subscribe answers a subscriber GET. A long-poll is registered here
// before Redis is asked, so no notification can pass between the two.
//
// Every wake, this instance's own publications included, comes through
// pub/sub: Redis delivers notifications in the order its scripts ran, so a
// waiter woken by the first notification past its gen gets the first
// message past its cursor. (Waking local waiters straight from Publish
// would let a later publication overtake an earlier one.)
func (s *RedisStore) Subscribe(key string, req SubscribeRequest) (SubscribeResult, error) {
	var w *Waiter
	if req.Wait {
		if s.closing.Load() {
			w = &Waiter{C: make(chan Wake, 1), idx: -1}
			w.C <- Wake{Reason: WakeShutdown}
			return SubscribeResult{Waiter: w}, nil
		}
		w = s.register(key)
	}
	res, err := s.run(s.ctx, redisSubscribe, key, b01(req.Create), cursorScore(req), b01(req.Wait),
		int(req.Concurrency), req.MaxWaiters, s.instance, s.notes, keyHeader(key), keyCost(key))
	if err != nil {
		s.unregister(w)
		return SubscribeResult{}, err
	}
	kind := str(res[0])
	if len(res) > 2 {
		s.expired.Add(uint64(num(res[1])))
	}
	if kind == "wait" {
		s.settle(w, num(res[3]), str(res[4]), time.Duration(num(res[5]))*time.Millisecond)
		return SubscribeResult{Waiter: w}, nil
	}
	s.unregister(w) // every other answer ends the request now
	switch kind {
	case "msg":
		s.delivered.Add(1)
		return SubscribeResult{Message: newMessage(parseID(str(res[3])), str(res[4]))}, nil
	case "none":
		return SubscribeResult{}, nil
	case "nf":
		return SubscribeResult{}, ErrChannelNotFound
	case "conflict":
		return SubscribeResult{}, ErrConflict
	case "toomany":
		return SubscribeResult{}, ErrTooManySubscribers
	}
	return SubscribeResult{}, fmt.Errorf("redis store: unexpected subscribe answer %q", kind)
}

// register parks a new waiter, pending until Subscribe learns its gen.
func (s *RedisStore) register(key string) *Waiter {
	w := &Waiter{C: make(chan Wake, 1), idx: -1, rw: &redisWait{key: key, pending: true}}
	if s.subscribed.Load() {
		w.rw.epoch = s.epoch.Load()
	}
	s.mu.Lock()
	lc := s.local[key]
	if lc == nil {
		lc = &localChannel{}
		s.local[key] = lc
	}
	w.rw.idx = len(lc.waiters)
	lc.waiters = append(lc.waiters, w)
	lc.pending++
	s.mu.Unlock()
	return w
}

// remove takes a waiter out of its channel's list; s.mu is held.
func (lc *localChannel) remove(w *Waiter) {
	i := w.rw.idx
	if i < 0 {
		return
	}
	last := len(lc.waiters) - 1
	moved := lc.waiters[last]
	lc.waiters[i] = moved
	moved.rw.idx = i
	lc.waiters[last] = nil
	lc.waiters = lc.waiters[:last]
	w.rw.idx = -1
}

// unpark takes a parked waiter out of its channel and reports whether it
// was parked; s.mu is held.
func (s *RedisStore) unpark(w *Waiter) bool {
	lc := s.local[w.rw.key]
	if lc == nil || w.rw.idx < 0 {
		return false
	}
	lc.remove(w)
	s.forget(w.rw.key, lc)
	return true
}

// send answers a waiter taken out of its channel, counting a delivery;
// s.mu is held.
func (s *RedisStore) send(w *Waiter, wk Wake) {
	w.C <- wk
	if wk.Reason == WakeMessage {
		s.delivered.Add(1)
	}
}

// endPending ends a waiter's pending state; s.mu is held.
func (s *RedisStore) endPending(lc *localChannel, w *Waiter) {
	if !w.rw.pending {
		return
	}
	w.rw.pending = false
	lc.pending--
	if lc.pending == 0 {
		lc.notes = nil
	}
}

// forget drops a channel with no waiters left; s.mu is held.
func (s *RedisStore) forget(key string, lc *localChannel) {
	if len(lc.waiters) == 0 && lc.pending == 0 && s.local[key] == lc {
		delete(s.local, key)
	}
}

// unregister drops a pending waiter that will not wait after all.
func (s *RedisStore) unregister(w *Waiter) {
	if w == nil || w.rw == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lc := s.local[w.rw.key]
	if lc == nil {
		return
	}
	s.endPending(lc, w)
	lc.remove(w)
	s.forget(w.rw.key, lc)
}

// settle records a parked waiter's gen and applies the notifications that
// came while it was pending and are newer than its gen.
//
// A waiter registered while the subscription was down or being replaced
// may have missed its notification: it is rechecked in Redis now if the
// subscription is back, or by the listener when it is.
func (s *RedisStore) settle(w *Waiter, gen int64, cursor string, ct time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lc := s.local[w.rw.key]
	if lc == nil {
		return // released meanwhile (exit)
	}
	w.rw.gen, w.rw.cursor = gen, cursor
	if ct > 0 {
		lc.ct = ct
	}
	lc.kept = time.Now() // the subscribe script marked the channel used
	var again *recheck
	if w.rw.idx >= 0 {
		for i := range lc.notes {
			if n := &lc.notes[i]; n.gen > gen {
				if missed := s.apply(lc, w, n); missed != nil {
					again = &recheck{w, missed}
				}
				break
			}
		}
	}
	s.endPending(lc, w)
	s.forget(w.rw.key, lc)
	if again == nil && w.rw.idx >= 0 && (w.rw.epoch == 0 || w.rw.epoch != s.epoch.Load()) && s.subscribed.Load() {
		w.rw.rechecking = true
		again = &recheck{w: w}
	}
	if again != nil {
		go s.recheckWaiters([]recheck{*again})
	}
}

// apply ends a parked waiter's wait with a notification newer than its
// gen; s.mu is held. Only the notification that raised the channel from
// the waiter's gen to the next one carries the first message after its
// cursor: for a later one the waiter missed an event (a broken
// subscription, or keys that expired and were made again), so apply marks
// it rechecking and returns the notification; the caller rechecks it in
// Redis, which sends it the right message. A deletion or a displacement
// ends the wait whatever was missed before it.
func (s *RedisStore) apply(lc *localChannel, w *Waiter, n *note) (missed *note) {
	if n.kind == 'm' && n.gen != w.rw.gen+1 {
		w.rw.rechecking = true
		return n
	}
	lc.remove(w)
	s.send(w, n.wake())
	return nil
}

// deliver applies a notification to this process's waiters: every waiter
// parked at a lower gen is woken.
func (s *RedisStore) deliver(n note) {
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
	wk := n.wake()
	kept := lc.waiters[:0]
	woken := 0
	var missed []recheck
	for _, w := range lc.waiters {
		switch {
		case w.rw.pending || w.rw.rechecking || w.rw.gen >= n.gen:
		case n.kind == 'm' && n.gen != w.rw.gen+1: // see apply
			w.rw.rechecking = true
			missed = append(missed, recheck{w, &n})
		default:
			w.rw.idx = -1
			w.C <- wk
			woken++
			continue
		}
		w.rw.idx = len(kept)
		kept = append(kept, w)
	}
	clear(lc.waiters[len(kept):])
	lc.waiters = kept
	s.forget(n.key, lc)
	s.mu.Unlock()
	if n.kind == 'm' {
		s.delivered.Add(uint64(woken))
	}
	if len(missed) > 0 {
		go s.recheckWaiters(missed)
	}
}

// Cancel removes a waiter whose client went away or timed out, and
// uncounts it in Redis.
func (s *RedisStore) Cancel(w *Waiter) {
	if w.rw == nil {
		return
	}
	s.mu.Lock()
	parked, gen := s.unpark(w), w.rw.gen
	s.mu.Unlock()
	if !parked {
		return
	}
	if s.closing.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, redisCallTimeout)
	defer cancel()
	_, _ = s.run(ctx, redisCancel, w.rw.key, s.instance, gen, 1)
}

// Touch creates the channel if needed and returns its info (publisher PUT).
func (s *RedisStore) Touch(key string, channelTimeout time.Duration) (ChannelInfo, error) {
	res, err := s.run(s.ctx, redisTouch, key, channelTimeout.Milliseconds(), keyCost(key))
	if err != nil {
		return ChannelInfo{}, err
	}
	return s.infoOf(res), nil
}

// infoOf reads an info answer: ok, expired, messages, requested, waiters,
// bytes, options.
func (s *RedisStore) infoOf(res []any) ChannelInfo {
	s.expired.Add(uint64(num(res[1])))
	return ChannelInfo{Messages: int(num(res[2])), Requested: num(res[3]), Subscribers: int(num(res[4]))}
}

func (s *RedisStore) info(key string) ([]any, error) {
	res, err := s.run(s.ctx, redisInfo, key)
	if err != nil {
		return nil, err
	}
	if str(res[0]) == "nf" {
		return nil, ErrChannelNotFound
	}
	return res, nil
}

// Info returns a channel's info (publisher GET), or ErrChannelNotFound.
func (s *RedisStore) Info(key string) (ChannelInfo, error) {
	res, err := s.info(key)
	if err != nil {
		return ChannelInfo{}, err
	}
	return s.infoOf(res), nil
}

// Delete removes a channel; its waiters on every instance get 410.
func (s *RedisStore) Delete(key string) (ChannelInfo, error) {
	res, err := s.run(s.ctx, redisDelete, key, s.notes, keyHeader(key))
	if err != nil {
		return ChannelInfo{}, err
	}
	if str(res[0]) == "nf" {
		return ChannelInfo{}, ErrChannelNotFound
	}
	return s.infoOf(res), nil
}

// ChannelStatOf describes one channel, or answers ErrChannelNotFound.
func (s *RedisStore) ChannelStatOf(key string) (ChannelStat, error) {
	res, err := s.info(key)
	if err != nil {
		return ChannelStat{}, err
	}
	i := s.infoOf(res)
	return ChannelStat{Key: key, Messages: i.Messages, Waiters: i.Subscribers, LastRequested: i.Requested,
		Bytes: num(res[5])}, nil
}

// LastPublishOptions returns the options of a channel's last publication,
// or def.
func (s *RedisStore) LastPublishOptions(key string, def PublishOptions) (PublishOptions, error) {
	res, err := s.info(key)
	if errors.Is(err, ErrChannelNotFound) {
		return def, nil
	}
	if err != nil {
		return def, err
	}
	return decodeOptions(str(res[6]), def), nil
}

// Interface guards
var _ Store = (*RedisStore)(nil)
