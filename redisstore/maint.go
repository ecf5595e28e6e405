package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the Redis store's lifecycle and housekeeping: the
// connection, keepalives for channels with subscriptions here, the
// used_memory budget, exit-time release, and the admin API's statistics
// and listings.

// Start connects the store (once) and starts the once-a-second
// housekeeping if it is not running.
func (s *Store) Start() {
	s.started.Do(s.connect)
	s.sweeper.Start(time.Second, func() { s.Sweep() })
}

// connect checks Redis, saying whether it is up, and starts the
// notification listener. It runs once, when the app starts: a config that
// is only validated opens no connection and starts no goroutine.
func (s *Store) connect() {
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

// Sweep refreshes the used_memory sample (when a budget is set) and marks
// used the channels that have subscribers here and a third of streamTTL
// (or of their channel_timeout, if shorter) since the last keepalive, so
// Redis does not expire them under their subscribers and keeps counting
// this instance's streams and parked long-polls. It returns the number of
// keepalives sent.
func (s *Store) Sweep() int {
	if s.maxBytes.Load() > 0 {
		ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
		_ = s.sampleMemory(ctx)
		cancel()
	}
	now := time.Now()
	s.forgetRecent(now)
	type keep struct {
		key          string
		streams, reg int64 // the streams counted here, the least gen they registered at
		least        int64 // the least gen any subscriber counted here registered at
		polls        int   // the long-polls waiting here, parked or being registered
	}
	var due []keep
	s.mu.Lock()
	for key, lc := range s.local {
		// The counts must not lapse (streamsOf, countPolls), nor the keys
		// expire.
		every := streamTTL / 3
		if lc.ct > 0 {
			every = min(every, lc.ct/3)
		}
		if lc.kept.IsZero() {
			lc.kept = now
		}
		if lc.subs.Len() > 0 && now.Sub(lc.kept) >= every {
			k := keep{key: key, least: -1, polls: lc.subs.Len() - lc.streams}
			lc.subs.Each(func(m *member) {
				if !m.counted {
					return
				}
				if k.least < 0 || m.regGen < k.least {
					k.least = m.regGen
				}
				if m.stream {
					if k.streams == 0 || m.regGen < k.reg {
						k.reg = m.regGen
					}
					k.streams++
				}
			})
			due = append(due, k)
		}
	}
	s.mu.Unlock()
	// Each call has its own time, and a channel is kept (not due again for
	// a period) once its call succeeded: the first that fails (Redis down)
	// ends the round, and the rest stay due for the next.
	sent := 0
	var again []recheck // of every channel of the round: one recheck, one log line
	channels := 0
	for _, k := range due {
		ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
		res, err := s.run(ctx, scriptKeepalive, k.key, s.instance, k.streams, k.reg, k.least, k.polls)
		cancel()
		sent++
		if err != nil {
			break
		}
		s.mu.Lock()
		if lc := s.local[k.key]; lc != nil {
			lc.kept = now
			if len(res) > 1 && (str(res[0]) == "ok" || str(res[0]) == "lost") {
				// The channel_timeout its interest lasts for (with streamTTL
				// at least) and its next keepalive is due by.
				lc.ct = time.Duration(num(res[1])) * time.Millisecond
			}
		}
		s.mu.Unlock()
		n := len(again)
		switch str(res[0]) {
		case "nf", "lost":
			again = s.lookUpAgain(again, k.key, -1)
		case "wiped":
			again = s.lookUpAgain(again, k.key, num(res[1]))
		}
		if len(again) > n {
			channels++
		}
	}
	if len(again) > 0 {
		s.logger.Info("redis lost channels or this instance's interest in them; looking their subscribers up again",
			zap.Int("channels", channels), zap.Int("subscribers", len(again)))
		go s.recheck(again)
	}
	return sent
}

// lookUpAgain rechecks in Redis the subscribers of a channel that a
// keepalive found gone, or without this instance's interest (wiped < 0),
// or whose counts were wiped at gen wiped (those registered before it):
// Redis lost the channel or the interest, or a displacement ended them,
// and the notification that would show it may not come (a publication is
// notified only while some instance's interest lasts). Streams are caught
// up, long-polls rechecked, as after a resubscription. It appends them to
// list, marked as being rechecked, and returns it.
func (s *Store) lookUpAgain(list []recheck, key string, wiped int64) []recheck {
	s.mu.Lock()
	if lc := s.local[key]; lc != nil {
		lc.subs.Each(func(m *member) {
			if m.counted && !m.pending && !m.rechecking && (wiped < 0 || m.regGen < wiped) {
				s.setRechecking(m, true)
				list = append(list, recheck{m: m})
			}
		})
	}
	s.mu.Unlock()
	return list
}

// ReleaseAll ends every subscription of this process with Shutdown and
// makes every later one end at once: the process is exiting. Their counts
// in Redis are taken back.
func (s *Store) ReleaseAll() int {
	s.closing.Store(true)
	type count struct {
		key  string
		gen  int64
		kind string
	}
	counts := map[count]int{}
	n := 0
	s.mu.Lock()
	for key, lc := range s.local {
		lc.subs.Each(func(m *member) {
			switch {
			case !m.counted:
			case m.stream:
				counts[count{key, m.regGen, "s"}]++
			default:
				counts[count{key, m.gen, "w"}]++
			}
			m.counted = false
		})
		n += lc.subs.EndAll(pushstore.Shutdown)
		lc.streams = 0
		if lc.pending == 0 {
			delete(s.local, key)
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	for c, k := range counts {
		if _, err := s.run(ctx, scriptCancel, c.key, s.instance, c.gen, k, c.kind); err != nil {
			break
		}
	}
	return n
}

// Close stops the housekeeping and the listener, ends the subscriptions
// and closes the connection pool.
func (s *Store) Close() error {
	s.sweeper.Stop()
	s.ReleaseAll()
	s.cancel()
	s.started.Do(func() { close(s.listenDone) }) // never started: no listener
	if s.pubsub != nil {
		_ = s.pubsub.Close()
	}
	<-s.listenDone
	return s.client.Close()
}

// scan returns the keys matching a glob pattern on every master.
func (s *Store) scan(ctx context.Context, pattern string) ([]string, error) {
	var mu sync.Mutex
	var keys []string
	err := s.eachNode(ctx, func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for it.Next(ctx) {
			mu.Lock()
			keys = append(keys, it.Val())
			mu.Unlock()
		}
		return it.Err()
	})
	if err != nil {
		return nil, s.fail(err)
	}
	return keys, nil
}

// globEscape escapes the pattern characters of Redis's SCAN MATCH.
func globEscape(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ { // bytes: a key need not be UTF-8
		if strings.IndexByte(`*?[]\`, v[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// channelKeys returns the keys of the channels whose key starts with
// prefix, sorted, by scanning Redis.
func (s *Store) channelKeys(ctx context.Context, prefix string) ([]string, error) {
	head := s.prefix + "{"
	found, err := s.scan(ctx, globEscape(head+prefix)+"*}:m")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(found))
	for _, k := range found {
		out = append(out, strings.TrimSuffix(strings.TrimPrefix(k, head), "}:m"))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Stats returns the store's figures. Channels and messages are counted by
// scanning Redis, waiters are this instance's, the counters are this
// instance's since it started, and bytes are Redis's used_memory.
func (s *Store) Stats() (pushstore.Stats, error) {
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	if err := s.sampleMemory(ctx); err != nil {
		return pushstore.Stats{}, err
	}
	keys, err := s.channelKeys(ctx, "")
	if err != nil {
		return pushstore.Stats{}, err
	}
	st := pushstore.Stats{Channels: len(keys), Bytes: s.usedMem.Load(), MaxBytes: s.maxBytes.Load()}
	pipe := s.client.Pipeline()
	cards := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cards[i] = pipe.ZCard(ctx, s.Keys(k)[1])
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return pushstore.Stats{}, s.fail(err)
		}
	}
	for _, c := range cards {
		st.Messages += int(c.Val())
	}
	for _, k := range keys {
		st.ChannelBytes += keyCost(k)
	}
	s.mu.Lock()
	for _, lc := range s.local {
		st.Waiters += lc.subs.Len() - lc.pending // parked: their Subscribe returned
	}
	s.mu.Unlock()
	return st, nil
}

// Channels returns up to limit channels whose key starts with prefix and
// sorts after `after`, in key order, and the key to list after next; see
// pushstore.Inspector.
func (s *Store) Channels(prefix, after string, limit int) ([]pushstore.ChannelStat, string, error) {
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	keys, err := s.channelKeys(ctx, prefix)
	if err != nil {
		return nil, "", err
	}
	i, _ := slices.BinarySearch(keys, after)
	for i < len(keys) && keys[i] <= after {
		i++
	}
	keys = keys[i:]
	next := ""
	if len(keys) > limit {
		keys = keys[:limit]
		next = keys[limit-1]
	}
	out := make([]pushstore.ChannelStat, 0, len(keys))
	for _, k := range keys {
		st, err := s.Channel(k)
		if err == pushstore.ErrChannelNotFound {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, st)
	}
	return out, next, nil
}

// SetMaxBytes sets the budget on Redis's used_memory; 0 is none.
func (s *Store) SetMaxBytes(n int64) { s.maxBytes.Store(n) }

// MaxBytes returns the budget.
func (s *Store) MaxBytes() int64 { return s.maxBytes.Load() }

// reserve refuses a publication that would take Redis's used_memory past
// the budget. used_memory is sampled by the sweeper every second, and here
// whenever this instance's publications since the last sample reach a
// quarter of the headroom it left: Redis spends more than the message's
// bytes (buffers, replication, pub/sub), and the samples come closer
// together as the budget fills.
func (s *Store) reserve(ctx context.Context, size int64) error {
	limit := s.maxBytes.Load()
	if limit <= 0 {
		return nil
	}
	if headroom := limit - s.usedMem.Load(); !s.sampled.Load() || s.since.Load()+size > headroom/4 {
		if err := s.sampleMemory(ctx); err != nil {
			return err
		}
		if s.usedMem.Load()+size > limit {
			return pushstore.ErrInsufficientStorage
		}
	}
	s.since.Add(size)
	return nil
}

// sampleMemory reads used_memory, summed over a Cluster's masters.
func (s *Store) sampleMemory(ctx context.Context) error {
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
func (s *Store) eachNode(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := s.client.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("unsupported redis client %T", s.client)
}

// Channel describes one channel, or answers pushstore.ErrChannelNotFound.
func (s *Store) Channel(key string) (pushstore.ChannelStat, error) {
	res, err := s.info(key)
	if err != nil {
		return pushstore.ChannelStat{}, err
	}
	i := s.infoOf(res)
	return pushstore.ChannelStat{Key: key, Messages: i.Messages, Waiters: i.Subscribers, LastRequested: i.Requested,
		Bytes: num(res[5])}, nil
}

// LastPublishOptions returns the options of a channel's last publication,
// or def.
func (s *Store) LastPublishOptions(key string, def pushstore.PublishOptions) (pushstore.PublishOptions, error) {
	res, err := s.info(key)
	if errors.Is(err, pushstore.ErrChannelNotFound) {
		return def, nil
	}
	if err != nil {
		return def, err
	}
	return decodeOptions(str(res[6]), def), nil
}
