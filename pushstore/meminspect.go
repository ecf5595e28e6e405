package pushstore

import (
	"slices"
	"strings"
	"time"
)

// This file holds the memory store's inspection for the admin API and
// the metrics (Inspector); it scans the store.

// Stats returns the store's size.
func (s *MemoryStore) Stats() (Stats, error) {
	now := s.now()
	all := s.snapshot()
	st := Stats{Channels: len(all), Bytes: s.used.Load(), MaxBytes: s.maxBytes.Load(), ChannelBytes: s.channelBytes.Load()}
	for _, c := range all {
		c.mu.Lock()
		s.pruneExpired(c, now)
		st.Messages += len(c.msgs)
		st.Waiters += c.subs.Len()
		s.done(c)
	}
	return st, nil
}

// Channels returns up to limit channels whose key starts with prefix and
// sorts after `after`, in key order, and the key to list after next; see
// Inspector.
func (s *MemoryStore) Channels(prefix, after string, limit int) ([]ChannelStat, string, error) {
	now := s.now()
	var picked []*channel
	for _, c := range s.snapshot() {
		if strings.HasPrefix(c.key, prefix) && c.key > after {
			picked = append(picked, c)
		}
	}
	slices.SortFunc(picked, func(a, b *channel) int { return strings.Compare(a.key, b.key) })
	next := ""
	if len(picked) > limit {
		picked = picked[:limit]
		next = picked[limit-1].key
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
	return out, next, nil
}

// Channel describes one channel, or answers ErrChannelNotFound.
func (s *MemoryStore) Channel(key string) (ChannelStat, error) {
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
