// Package redisstore is the channel store of caddy-push in Redis
// (standalone, Sentinel or Cluster), for running several Caddy instances
// as one push server. The protocol's state (messages, ids, buffers,
// subscriber counts) lives in Redis and changes only through Lua scripts,
// each atomic on the node that holds its channel; each process holds only
// its own subscriptions, which a Redis pub/sub notification per event
// wakes. It implements pushstore.Store and its optional interfaces.
package redisstore

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

	"github.com/caddypush/caddy-push/internal/sweep"
	"github.com/caddypush/caddy-push/pushstore"
)

// Store is the channel store in Redis (see scripts.go for the data). It is
// safe for concurrent use.
type Store struct {
	client   redis.UniversalClient
	batches  bool // client is a single node's (or Sentinel's): publish calls may go together (pipeline.go)
	prefix   string
	notes    string // the pub/sub channel of notifications
	instance string // this store's id in subscriber counts and notifications
	logger   *zap.Logger
	skew     atomic.Pointer[func() time.Duration] // tests move the clock

	maxBytes atomic.Int64 // 0: no budget of ours
	sampled  atomic.Bool  // usedMem holds a sample
	usedMem  atomic.Int64 // Redis used_memory at the last sample
	since    atomic.Int64 // bytes published since that sample
	down     atomic.Bool
	closing  atomic.Bool
	// notesDown says the notes connection broke while Redis answered
	// commands (logged once until the subscription is made again).
	notesDown atomic.Bool

	// subscribed says the notes subscription is confirmed and not known to
	// be broken; epoch counts its confirmations. A subscription registered
	// while unsubscribed, or under an older epoch, may have missed
	// notifications and is rechecked in Redis once the subscription is back.
	subscribed atomic.Bool
	epoch      atomic.Uint64

	published atomic.Uint64
	delivered atomic.Uint64
	expired   atomic.Uint64

	mu    sync.Mutex
	local map[string]*localChannel

	// polls and pubs coalesce long-poll registrations and publications
	// of one channel (coalesce.go).
	polls coalescer[pollKey, struct{}]
	pubs  coalescer[pubKey, []byte]

	// pipe sends the publications that come while others are in Redis
	// together (pipeline.go).
	pipe pipeline

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

	sweeper sweep.Ticker
}

// callTimeout bounds calls made outside a request (cancels, sweeps,
// rechecks); request calls are bounded by the client's read timeout.
const callTimeout = 5 * time.Second

var setRedisLogger sync.Once

// New returns a store for the Redis that o describes. It opens no
// connection: Start does, and until Redis answers the store answers
// *pushstore.UnavailableError (503).
func New(o Options) (*Store, error) {
	u, err := o.universal()
	if err != nil {
		return nil, err
	}
	return NewFromClient(redis.NewUniversalClient(u), o.KeyPrefix, o.MaxBytes, o.Logger), nil
}

// NewFromClient returns a store on an existing client, whose keys start
// with prefix.
func NewFromClient(client redis.UniversalClient, prefix string, maxBytes int64, logger *zap.Logger) *Store {
	if logger == nil {
		logger = zap.NewNop()
	}
	setRedisLogger.Do(func() { redis.SetLogger(redisLog{logger}) })
	var id [8]byte
	_, _ = rand.Read(id[:])
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		client: client, prefix: prefix, notes: prefix + "notes", instance: hex.EncodeToString(id[:]),
		logger: logger, local: make(map[string]*localChannel), recent: make(map[string]recentID),
		ctx: ctx, cancel: cancel, listenDone: make(chan struct{}), pubs: coalescer[pubKey, []byte]{max: maxPublications},
	}
	s.maxBytes.Store(maxBytes)
	onceOnCluster(client)
	_, s.batches = client.(*redis.Client)
	return s
}

// SetClockSkew makes the scripts read Redis's clock moved by skew(): tests
// move time forward without waiting. nil is no skew.
func (s *Store) SetClockSkew(skew func() time.Duration) {
	if skew == nil {
		s.skew.Store(nil)
		return
	}
	s.skew.Store(&skew)
}

// Client returns the store's Redis client (tests look into Redis with it).
func (s *Store) Client() redis.UniversalClient { return s.client }

// Keys returns a channel's keys, in the order the scripts take them.
func (s *Store) Keys(key string) []string {
	tag := s.prefix + "{" + key + "}:"
	return []string{tag + "m", tag + "q", tag + "d", tag + "e", tag + "x", tag + "w", tag + "z", tag + "s", tag + "i"}
}

func (s *Store) skewArg() int64 {
	if f := s.skew.Load(); f != nil {
		return (*f)().Milliseconds()
	}
	return 0
}

func keyHeader(key string) string { return strconv.Itoa(len(key)) + " " + key }

func keyCost(key string) int64 { return int64(len(key)) + pushstore.ChannelOverhead }

func b01(b bool) int {
	if b {
		return 1
	}
	return 0
}

// fail classifies an error of a Redis call: Redis out of memory is
// pushstore.ErrInsufficientStorage; an unreachable, loading or
// failing-over Redis is an *pushstore.UnavailableError (logged once until
// Redis answers again); any other error reply is a plain error (500).
func (s *Store) fail(err error) error {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		switch {
		case strings.HasPrefix(msg, "OOM "):
			return pushstore.ErrInsufficientStorage
		case !hasAnyPrefix(msg, "LOADING", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "BUSY"):
			return fmt.Errorf("redis store: %w", err)
		}
	}
	if cc, ok := s.client.(*redis.ClusterClient); ok {
		// A node that fails may have been failed over: go-redis reloads
		// its slot map on MOVED and ASK, which a dead master never sends,
		// and otherwise once the map is a minute old. (LazyReload runs
		// one reload at a time, 200 ms apart at most.)
		cc.ReloadState(s.ctx)
	}
	if s.down.CompareAndSwap(false, true) {
		s.logger.Error("redis unavailable; answering 503 until it returns", zap.Error(err))
	}
	return &pushstore.UnavailableError{Backend: "redis", Err: err}
}

// up notes that Redis answered.
func (s *Store) up() {
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
func (s *Store) run(ctx context.Context, sc *redis.Script, key string, args ...any) ([]any, error) {
	return s.answer(sc.Run(ctx, s.client, s.Keys(key), s.argv(args)...).Result())
}

// runPiped runs publish.lua through the pipeline (pipeline.go):
// publications of many channels go together. Its answer has answers
// values.
func (s *Store) runPiped(ctx context.Context, key string, answers int, args ...any) ([]any, error) {
	return s.answer(s.callPiped(ctx, s.Keys(key), s.argv(args), answers))
}

// preludeArgs is how many of a script's arguments are the prelude's.
var preludeArgs = 1 + len(scriptConstants)

// argv is a script's arguments: the prelude's, then its own.
func (s *Store) argv(args []any) []any {
	argv := make([]any, 0, preludeArgs+len(args))
	return append(append(append(argv, s.skewArg()), scriptConstants...), args...)
}

// answer reads a script's answer (see run).
func (s *Store) answer(v any, err error) ([]any, error) {
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
func parseID(v string) pushstore.MessageID {
	t, g, _ := strings.Cut(v, ":")
	tm, _ := strconv.ParseInt(t, 10, 64)
	tag, _ := strconv.ParseInt(g, 10, 64)
	return pushstore.MessageID{Time: tm, Tag: tag}
}

// A message's payload, as Redis stores it and notifications carry it, is
// its content type, "\n", its EventSource event name, "\n", its body (the
// content type and the event name hold no newline: a header value cannot).

// encodePayload returns msg's payload.
func encodePayload(msg *pushstore.Message) []byte {
	p := make([]byte, 0, len(msg.ContentType)+len(msg.Event)+2+len(msg.Body))
	p = append(append(p, msg.ContentType...), '\n')
	p = append(append(p, msg.Event...), '\n')
	return append(p, msg.Body...)
}

// newMessage builds a message from its id and stored form, "<publication
// time, µs>\n<payload>", and returns the publication time too (the order
// of messages across channels, Delivery.Seq).
func newMessage(id pushstore.MessageID, stored string) (*pushstore.Message, uint64) {
	if !hasPublicationTime(stored) {
		// stored by a version before streams: "<content type>\n<body>"
		ct, body, _ := strings.Cut(stored, "\n")
		return &pushstore.Message{ID: id, Body: []byte(body), ContentType: ct}, 0
	}
	us, payload, _ := strings.Cut(stored, "\n")
	seq, _ := strconv.ParseUint(us, 10, 64)
	ct, rest, _ := strings.Cut(payload, "\n")
	event, body, _ := strings.Cut(rest, "\n")
	return &pushstore.Message{ID: id, Body: []byte(body), ContentType: ct, Event: event}, seq
}

// hasPublicationTime reports whether a stored message starts with the
// 16-digit publication time of today's form (a content type never does).
func hasPublicationTime(stored string) bool {
	if len(stored) < 17 || stored[16] != '\n' {
		return false
	}
	for i := range 16 {
		if stored[i] < '0' || stored[i] > '9' {
			return false
		}
	}
	return true
}

// message is newMessage without the publication time.
func message(id pushstore.MessageID, stored string) *pushstore.Message {
	m, _ := newMessage(id, stored)
	return m
}

// Counters returns this process's lifetime counts: its publications, its
// deliveries and the expiries its scripts found.
func (s *Store) Counters() pushstore.Counters {
	return pushstore.Counters{Published: s.published.Load(), Delivered: s.delivered.Load(), Expired: s.expired.Load()}
}

// recentID is an id seen, and when it was seen.
type recentID struct {
	id   pushstore.MessageID
	seen time.Time
}

// recentFor is how long an id stays in Store.recent: longer than a second
// of Redis's clock, with room for the instances' clocks to differ.
const recentFor = 3 * time.Second

// remember records id as seen on a channel.
func (s *Store) remember(key string, id pushstore.MessageID) {
	s.recentMu.Lock()
	if r, ok := s.recent[key]; !ok || id.After(r.id) {
		s.recent[key] = recentID{id, time.Now()}
	}
	s.recentMu.Unlock()
}

// floor returns the newest id recently seen on a channel, "time:tag", or
// "" when none was.
func (s *Store) floor(key string) string {
	s.recentMu.Lock()
	r, ok := s.recent[key]
	s.recentMu.Unlock()
	if !ok {
		return ""
	}
	return r.id.String()
}

// forgetRecent drops the ids seen longer ago than recentFor.
func (s *Store) forgetRecent(now time.Time) {
	s.recentMu.Lock()
	for k, r := range s.recent {
		if now.Sub(r.seen) > recentFor {
			delete(s.recent, k)
		}
	}
	s.recentMu.Unlock()
}

// encodeOptions stores a publication's settings for LastPublishOptions.
func encodeOptions(o pushstore.PublishOptions) string {
	return fmt.Sprintf("%d %d %d %d %d %d %d", b01(o.StoreMessages), o.MaxBufferLength, o.MinBufferLength,
		o.MinRecipients, b01(o.DeleteOldestReceived), o.MessageTimeout.Milliseconds(), o.ChannelTimeout.Milliseconds())
}

func decodeOptions(v string, def pushstore.PublishOptions) pushstore.PublishOptions {
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
// to the subscribers of every instance.
func (s *Store) Publish(key string, msg *pushstore.Message, opts pushstore.PublishOptions) (pushstore.PublishResult, error) {
	ctx := s.ctx
	if err := s.reserve(ctx, int64(len(msg.Body)+len(msg.ContentType)+len(msg.Event))+pushstore.MessageOverhead); err != nil {
		return pushstore.PublishResult{}, err
	}
	o := encodeOptions(opts)
	res, i, err := s.pubs.do(pubKey{key, o}, encodePayload(msg), func(payloads [][]byte) ([]any, error) {
		args := make([]any, 0, 13+len(payloads))
		args = append(args, len(payloads), b01(opts.StoreMessages && opts.MaxBufferLength > 0),
			opts.MaxBufferLength, opts.MinBufferLength, opts.MinRecipients, b01(opts.DeleteOldestReceived),
			opts.MessageTimeout.Milliseconds(), ctMillis(opts.ChannelTimeout), o,
			s.notes, keyHeader(key), keyCost(key), s.floor(key))
		for _, p := range payloads {
			args = append(args, p)
		}
		want := 2 + 4*len(payloads) // requested, expired, then id, gen, waiters, stored for each
		res, err := s.runPiped(ctx, key, want, args...)
		if err == nil && len(res) != want {
			err = fmt.Errorf("redis store: publish answered %d values for %d publications", len(res), len(payloads))
		}
		if err == nil {
			s.expired.Add(uint64(num(res[1])))
		}
		return res, err
	})
	if err != nil {
		return pushstore.PublishResult{}, err
	}
	mine := res[2+4*i:]
	id := parseID(str(mine[0]))
	msg.ID = id
	s.remember(key, id)
	waiting := int(num(mine[2]))
	s.published.Add(1)
	return pushstore.PublishResult{
		ID:        id,
		Info:      pushstore.ChannelInfo{Messages: int(num(mine[3])), Requested: num(res[0]), Subscribers: waiting},
		Delivered: waiting,
	}, nil
}

// Subscribe answers a subscriber. A long-poll is registered here before
// Redis is asked, so no notification can pass between the two.
//
// Every wake, this instance's own publications included, comes through
// pub/sub: Redis delivers notifications in the order its scripts ran, so a
// subscription woken by the notification that follows its gen gets the
// first message past its cursor. (Waking local subscriptions straight from
// Publish would let a later publication overtake an earlier one.)
func (s *Store) Subscribe(key string, req pushstore.SubscribeRequest) (pushstore.SubscribeResult, error) {
	var sub *redisSub
	var m *member
	if req.Wait {
		sub = newRedisSub(s, 1, true, 0)
		if s.closing.Load() {
			sub.Close(pushstore.Shutdown)
			return pushstore.SubscribeResult{Sub: sub}, nil
		}
		m = &sub.members[0]
		m.key = key
		if !s.register(m) {
			sub.Close(pushstore.Shutdown)
			return pushstore.SubscribeResult{Sub: sub}, nil
		}
	}
	var res []any
	var err error
	if coalescable(req) {
		res, err = s.registerPoll(key, req)
	} else {
		res, err = s.subscribeCall(key, cursorScore(req.HasCursor, req.Cursor, req.Start), req, 1)
	}
	if err != nil {
		if m != nil {
			s.unregister(m)
		}
		return pushstore.SubscribeResult{}, err
	}
	kind := str(res[0])
	if kind == "wait" {
		s.settle(m, num(res[3]), str(res[4]), time.Duration(num(res[5]))*time.Millisecond)
		return pushstore.SubscribeResult{Sub: sub}, nil
	}
	if m != nil {
		s.unregister(m) // every other answer ends the request now
	}
	switch kind {
	case "msg":
		s.delivered.Add(1)
		id := parseID(str(res[3]))
		s.remember(key, id) // a notification of it came only if someone waited
		return pushstore.SubscribeResult{Message: message(id, str(res[4]))}, nil
	case "none":
		return pushstore.SubscribeResult{}, nil
	case "nf":
		return pushstore.SubscribeResult{}, pushstore.ErrChannelNotFound
	case "conflict":
		return pushstore.SubscribeResult{}, pushstore.ErrConflict
	case "toomany":
		return pushstore.SubscribeResult{}, pushstore.ErrTooManySubscribers
	}
	return pushstore.SubscribeResult{}, fmt.Errorf("redis store: unexpected subscribe answer %q", kind)
}

// subscribeCall runs the subscribe script for count subscribers of one
// request's kind (see registerPoll), at cursor (cursorScore's).
func (s *Store) subscribeCall(key, cursor string, req pushstore.SubscribeRequest, count int) ([]any, error) {
	res, err := s.run(s.ctx, scriptSubscribe, key, b01(req.Create), cursor, b01(req.Wait), int(req.Concurrency),
		req.MaxWaiters, s.instance, s.notes, keyHeader(key), keyCost(key), count)
	if err == nil && len(res) > 2 {
		s.expired.Add(uint64(num(res[1])))
	}
	return res, err
}

// Touch creates the channel if needed and returns its info (publisher PUT).
func (s *Store) Touch(key string, channelTimeout time.Duration) (pushstore.ChannelInfo, error) {
	res, err := s.run(s.ctx, scriptTouch, key, ctMillis(channelTimeout), keyCost(key))
	if err != nil {
		return pushstore.ChannelInfo{}, err
	}
	return s.infoOf(res), nil
}

// infoOf reads an info answer: ok, expired, messages, requested, waiters,
// bytes, options.
func (s *Store) infoOf(res []any) pushstore.ChannelInfo {
	s.expired.Add(uint64(num(res[1])))
	return pushstore.ChannelInfo{Messages: int(num(res[2])), Requested: num(res[3]), Subscribers: int(num(res[4]))}
}

func (s *Store) info(key string) ([]any, error) {
	res, err := s.run(s.ctx, scriptInfo, key)
	if err != nil {
		return nil, err
	}
	if str(res[0]) == "nf" {
		return nil, pushstore.ErrChannelNotFound
	}
	return res, nil
}

// Info returns a channel's info (publisher GET), or ErrChannelNotFound.
func (s *Store) Info(key string) (pushstore.ChannelInfo, error) {
	res, err := s.info(key)
	if err != nil {
		return pushstore.ChannelInfo{}, err
	}
	return s.infoOf(res), nil
}

// Delete removes a channel; its subscribers on every instance end Deleted.
func (s *Store) Delete(key string) (pushstore.ChannelInfo, error) {
	res, err := s.run(s.ctx, scriptDelete, key, s.notes, keyHeader(key))
	if err != nil {
		return pushstore.ChannelInfo{}, err
	}
	if str(res[0]) == "nf" {
		return pushstore.ChannelInfo{}, pushstore.ErrChannelNotFound
	}
	return s.infoOf(res), nil
}

// Interface guards
var (
	_ pushstore.Store     = (*Store)(nil)
	_ pushstore.Inspector = (*Store)(nil)
	_ pushstore.Budget    = (*Store)(nil)
	_ pushstore.Runner    = (*Store)(nil)
)

// ctMillis is a channel_timeout in whole ms, at least 1: Redis reads "0"
// as a channel that lasts no time, whose interest the instance would keep
// by the default's cadence.
func ctMillis(d time.Duration) int64 {
	return max(1, (d + time.Millisecond - 1).Milliseconds())
}
