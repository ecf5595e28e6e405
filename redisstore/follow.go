package redisstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the Redis store's Follow: streams and multiplexed polls.

// Follow registers a subscription on keys' channels; see pushstore.Store.
// Each channel is registered by its own script (the channels may live on
// different Cluster nodes): its member is put on the local list first, so
// that no notification passes between the script and the list, and the
// script answers its backlog; the backlogs are merged in publication order.
func (s *Store) Follow(keys []string, req pushstore.FollowRequest) (pushstore.Subscription, error) {
	if sub, done, err := pushstore.LookFirst(keys, req, s.Follow); done { // the look is mode n
		return sub, err
	}
	oneShot := req.OneShot || req.NoWait
	sub := newRedisSub(s, len(keys), oneShot, req.QueueBytes)
	sub.OnBehind = req.OnBehind
	if s.closing.Load() && !req.NoWait {
		sub.Close(pushstore.Shutdown)
		return sub, nil
	}
	mode := "s"
	switch {
	case req.NoWait:
		mode = "n"
	case req.OneShot:
		mode = "o"
	}
	var backlog []pushstore.Delivery
	uncounted := 0 // the backlog of channels before the last, for a stream
	for i, key := range keys {
		if i > 0 && !oneShot && sub.Ended() {
			// An earlier channel ended the stream (deleted, or a `last`
			// subscriber displaced it): it is sent nothing, so it takes
			// nothing from the later channels (their script counts a
			// stream's backlog as delivered).
			sub.Cancel()
			return sub, nil
		}
		m := &sub.members[i]
		m.key = key
		cursor := cursorScore(false, pushstore.MessageID{}, req.Start)
		if req.HasCursor && i < len(req.Cursors) {
			cursor = cursorScore(true, req.Cursors[i], req.Start)
		}
		chMode := mode
		switch {
		case mode == "s" && i < len(keys)-1:
			chMode = "t" // counted once every channel took the stream
		case mode == "o" && len(backlog) > 0:
			chMode = "n" // answered: it looks, and waits nowhere
		}
		if chMode != "n" && !s.register(m) {
			sub.Cancel()
			sub.Close(pushstore.Shutdown)
			return sub, nil
		}
		on := req.On(keys, i)
		res, err := s.run(s.ctx, scriptFollow, key, b01(req.Create), cursor, chMode, int(on.Concurrency),
			on.MaxWaiters, s.instance, s.notes, keyHeader(key), keyCost(key))
		if err == nil {
			err = followRefusal(res)
		}
		if err != nil {
			if chMode != "n" {
				s.unregister(m)
			}
			sub.Cancel()
			return nil, err
		}
		s.expired.Add(uint64(num(res[1])))
		n := len(backlog)
		for j := 5; j+1 < len(res); j += 2 {
			msg, seq := newMessage(parseID(str(res[j])), str(res[j+1]))
			backlog = append(backlog, pushstore.Delivery{Message: msg, Channel: i, Seq: seq})
		}
		if len(backlog) > n { // a notification of it came only if someone waited
			s.remember(key, backlog[len(backlog)-1].Message.ID)
		}
		if chMode == "s" {
			s.delivered.Add(uint64(len(backlog) - n))
		} else if chMode == "t" {
			uncounted = len(backlog)
		}
		if chMode == "n" {
			continue
		}
		last := str(res[3])
		if len(backlog) > n && afterCursor(backlog[len(backlog)-1].Message.ID.String(), last) {
			last = scoreOf(backlog[len(backlog)-1].Message.ID)
		}
		if mode == "o" && len(backlog) > n {
			s.unregister(m) // answered: not counted, not waiting
			continue
		}
		s.settle(m, num(res[2]), last, time.Duration(num(res[4]))*time.Millisecond)
		if h := testHookFollowed.Load(); h != nil {
			(*h)(i)
		}
	}
	if req.NoWait && len(backlog) == 0 {
		return nil, nil
	}
	s.receivedBacklog(keys, backlog[:uncounted])
	sub.Preload(backlog)
	if oneShot && len(backlog) > 0 {
		sub.Cancel() // answered from a backlog: off every channel now
		if d, ok := sub.AnsweredFrom(backlog); ok {
			s.received(keys[d.Channel], []pushstore.Delivery{d})
		}
	}
	return sub, nil
}

// testHookFollowed runs after a Follow's channel i waits for messages.
var testHookFollowed atomic.Pointer[func(i int)]

// receivedBacklog counts the backlog of a stream's channels before its
// last (in channel order) as delivered once every channel took the
// stream: one refused by a later channel (404, 403, 409) takes nothing
// from the earlier ones. The last channel's script counted its own.
func (s *Store) receivedBacklog(keys []string, backlog []pushstore.Delivery) {
	pushstore.ByChannel(backlog, func(ch int, ds []pushstore.Delivery) { s.received(keys[ch], ds) })
}

// received counts ds, messages of key's channel in its order, as
// delivered and applies their recipient rules: the backlog of a stream's
// channel, or the message a one-shot subscription was answered with from
// a backlog (only the one sent is counted: the others' channels had one
// too). A failure leaves them uncounted, as if they had not been received.
func (s *Store) received(key string, ds []pushstore.Delivery) {
	s.delivered.Add(uint64(len(ds)))
	args := make([]any, len(ds))
	for i, d := range ds {
		args[i] = d.Message.ID.String()
	}
	ctx, cancel := context.WithTimeout(s.ctx, callTimeout)
	defer cancel()
	_, _ = s.run(ctx, scriptReceived, key, args...)
}

// followRefusal reads a refusal of the follow script.
func followRefusal(res []any) error {
	switch kind := str(res[0]); kind {
	case "ok":
		return nil
	case "nf":
		return pushstore.ErrChannelNotFound
	case "conflict":
		return pushstore.ErrConflict
	case "toomany":
		return pushstore.ErrTooManySubscribers
	default:
		return fmt.Errorf("redis store: unexpected follow answer %q", kind)
	}
}
