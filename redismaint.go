package caddypush

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file holds the Redis store's housekeeping: keepalives for channels
// with parked waiters, the used_memory sample, exit-time release, and the
// admin API's statistics and listings.

// StartSweeper connects the store (once) and starts the once-a-second
// housekeeping if it is not running.
func (s *RedisStore) StartSweeper(every time.Duration) {
	s.started.Do(s.connect)
	s.sweeper.start(every, func() { s.Sweep() })
}

// StopSweeper stops the housekeeping and waits for it to end.
func (s *RedisStore) StopSweeper() { s.sweeper.halt() }

// Sweep refreshes the used_memory sample (when a budget is set) and marks
// used the channels that have waiters here and a third of their
// channel_timeout since the last keepalive, so Redis does not expire them
// under parked long-polls. It returns the number of keepalives sent.
func (s *RedisStore) Sweep() int {
	ctx, cancel := context.WithTimeout(s.ctx, redisCallTimeout)
	defer cancel()
	if s.maxBytes.Load() > 0 {
		_ = s.sampleMemory(ctx)
	}
	now := time.Now()
	s.forgetRecent(now)
	var due []string
	s.mu.Lock()
	for key, lc := range s.local {
		ct := lc.ct
		if ct <= 0 {
			ct = DefaultChannelTimeout
		}
		if lc.kept.IsZero() {
			lc.kept = now
		}
		if len(lc.waiters) > 0 && now.Sub(lc.kept) >= ct/3 {
			lc.kept = now
			due = append(due, key)
		}
	}
	s.mu.Unlock()
	for _, key := range due {
		if _, err := s.run(ctx, redisKeepalive, key); err != nil {
			break
		}
	}
	return len(due)
}

// ReleaseAll answers every waiter of this process with 304 and makes every
// later long-poll return at once: the process is exiting. Their counts in
// Redis are taken back.
func (s *RedisStore) ReleaseAll() int {
	s.closing.Store(true)
	type count struct {
		key string
		gen int64
	}
	counts := map[count]int{}
	n := 0
	s.mu.Lock()
	for key, lc := range s.local {
		for _, w := range lc.waiters {
			if !w.rw.pending {
				counts[count{key, w.rw.gen}]++
			}
			w.rw.idx = -1
			w.C <- Wake{Reason: WakeShutdown}
			n++
		}
		lc.waiters = nil
		if lc.pending == 0 {
			delete(s.local, key)
		}
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, redisCallTimeout)
	defer cancel()
	for c, k := range counts {
		if _, err := s.run(ctx, redisCancel, c.key, s.instance, c.gen, k); err != nil {
			break
		}
	}
	return n
}

// Destruct stops the housekeeping and the listener, releases the waiters
// and closes the connection pool (caddy.Destructor).
func (s *RedisStore) Destruct() error {
	s.StopSweeper()
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
func (s *RedisStore) scan(ctx context.Context, pattern string) ([]string, error) {
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
	for _, r := range v {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// channelKeys returns the keys of the channels whose key starts with
// prefix, sorted, by scanning Redis.
func (s *RedisStore) channelKeys(ctx context.Context, prefix string) ([]string, error) {
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
func (s *RedisStore) Stats() (Stats, error) {
	ctx, cancel := context.WithTimeout(s.ctx, redisCallTimeout)
	defer cancel()
	if err := s.sampleMemory(ctx); err != nil {
		return Stats{}, err
	}
	keys, err := s.channelKeys(ctx, "")
	if err != nil {
		return Stats{}, err
	}
	st := Stats{Channels: len(keys), Bytes: s.usedMem.Load(), MaxBytes: s.maxBytes.Load(),
		Published: s.published.Load(), Delivered: s.delivered.Load(), Expired: s.expired.Load()}
	pipe := s.client.Pipeline()
	cards := make([]*redis.IntCmd, len(keys))
	for i, k := range keys {
		cards[i] = pipe.ZCard(ctx, s.keys(k)[1])
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return Stats{}, s.fail(err)
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
		st.Waiters += len(lc.waiters) - lc.pending // parked: their Subscribe returned
	}
	s.mu.Unlock()
	return st, nil
}

// Channels returns up to limit channels whose key starts with prefix and
// sorts after `after`, in key order, and whether more follow.
func (s *RedisStore) Channels(prefix, after string, limit int) ([]ChannelStat, bool, error) {
	ctx, cancel := context.WithTimeout(s.ctx, redisCallTimeout)
	defer cancel()
	keys, err := s.channelKeys(ctx, prefix)
	if err != nil {
		return nil, false, err
	}
	i, _ := slices.BinarySearch(keys, after)
	for i < len(keys) && keys[i] <= after {
		i++
	}
	keys = keys[i:]
	more := len(keys) > limit
	if more {
		keys = keys[:limit]
	}
	out := make([]ChannelStat, 0, len(keys))
	for _, k := range keys {
		st, err := s.ChannelStatOf(k)
		if err == ErrChannelNotFound {
			continue // expired meanwhile
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, st)
	}
	return out, more, nil
}
