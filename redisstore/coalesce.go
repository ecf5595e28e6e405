package redisstore

import "github.com/caddypush/caddy-push/pushstore"

// This file coalesces the registrations of long-polls. After a
// publication every long-poll of a channel re-polls at once, with the same
// cursor; each registration is one subscribe script, and Redis runs them
// one after another. Instead, while one registration of a channel and
// cursor is in Redis, the long-polls that come with the same ones gather
// behind it, and when it answers they are registered by one call that
// counts them all (and answers them all: one message, one wait, or the
// same refusal). A long-poll that finds none in Redis calls at once, so an
// idle channel's latency is unchanged.
//
// Only registrations whose outcome cannot differ between them are
// coalesced: broadcast concurrency and no max_channel_subscribers (first
// and last concurrency and a subscriber limit are decided one subscriber
// at a time), and the same create flag.

// pollKey names the long-polls that may share one registration.
type pollKey struct {
	key    string
	cursor string
	create bool
}

// pollLine is a channel and cursor's registration in Redis, and the batch
// gathering behind it (nil when none has come yet).
type pollLine struct {
	next *pollBatch
}

// pollBatch is long-polls registered by one call. Its first member (the
// leader) makes the call once turn is closed; the others wait for done.
type pollBatch struct {
	members int
	turn    chan struct{}
	done    chan struct{}
	res     []any
	err     error
}

// coalescable reports whether a long-poll's registration may be shared.
func coalescable(req pushstore.SubscribeRequest) bool {
	return req.Wait && req.Concurrency == pushstore.Broadcast && req.MaxWaiters == 0
}

// registerPoll runs the subscribe script for a long-poll already
// registered here (see Store.Subscribe), shared with the long-polls of the
// same pollKey that come while one of theirs is in Redis; every member of
// a call gets its answer.
func (s *Store) registerPoll(key string, req pushstore.SubscribeRequest) ([]any, error) {
	pk := pollKey{key, cursorScore(req.HasCursor, req.Cursor, req.Start), req.Create}
	s.pollMu.Lock()
	line := s.polls[pk]
	if line == nil {
		s.polls[pk] = &pollLine{}
		s.pollMu.Unlock()
		res, err := s.subscribeCall(key, req, 1)
		s.passOn(pk)
		return res, err
	}
	b := line.next
	lead := b == nil
	if lead {
		b = &pollBatch{turn: make(chan struct{}), done: make(chan struct{})}
		line.next = b
	}
	b.members++
	s.pollMu.Unlock()
	if !lead {
		<-b.done
		return b.res, b.err
	}
	<-b.turn // passOn took b off the line: its member count is final
	b.res, b.err = s.subscribeCall(key, req, b.members)
	close(b.done)
	s.passOn(pk)
	return b.res, b.err
}

// passOn ends a registration call of pk's line: the batch behind it may
// call now, or the line is done.
func (s *Store) passOn(pk pollKey) {
	s.pollMu.Lock()
	line := s.polls[pk]
	if b := line.next; b != nil {
		line.next = nil
		close(b.turn)
	} else {
		delete(s.polls, pk)
	}
	s.pollMu.Unlock()
}
