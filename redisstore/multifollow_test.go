package redisstore

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestOneShotAnswerDoesNotSkipOlderStored: b0 is stored on b; a second
// later a1 is published on a while a multiplexed long-poll on a and b
// registers on b. The poll is answered a1; the next poll resumes from
// a1's compound id as the subscriber's handler writes it (msgid.go: time
// T of a1, a's tag, `-` for b, which reads back as "after second T-1"
// for b). b0, older than that second, must still come.
func TestOneShotAnswerDoesNotSkipOlderStored(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	var skew atomic.Int64
	s.SetClockSkew(func() time.Duration { return time.Duration(skew.Load()) })
	if _, err := s.Touch("a", time.Hour); err != nil {
		t.Fatal(err)
	}
	b0, err := s.Publish("b", &pushstore.Message{Body: []byte("b0")}, pub())
	if err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(2 * time.Second)) // a1 comes in a later second
	during := publishHeard(t, s, "a", "a1", pub())
	published := false
	onFollowed := func(i int) {
		if i != 0 || published {
			return
		}
		published = true
		during()
	}
	testHookFollowed.Store(&onFollowed)
	t.Cleanup(func() { testHookFollowed.Store(nil) })
	keys := []string{"a", "b"}
	sub, err := s.Follow(keys, pushstore.FollowRequest{OneShot: true, Create: true})
	if err != nil {
		t.Fatal(err)
	}
	testHookFollowed.Store(nil)
	ds, _ := sub.Take(nil)
	sub.Cancel()
	if len(ds) != 1 {
		t.Fatalf("published %v, answered %d", published, len(ds))
	}
	if !published { // the poll did not register on a (fixed): a1 comes after it
		if _, err := s.Publish("a", &pushstore.Message{Body: []byte("a1")}, pub()); err != nil {
			t.Fatal(err)
		}
	}
	got := []string{string(ds[0].Message.Body)}
	// The next polls echo the compound id (msgid.go): a1's or b0's time
	// T, the answered channel's tag, `-` (after second T-1) for the other
	// (the answers here fall in different seconds).
	for range 3 {
		id := ds[0].Message.ID
		cursors := []pushstore.MessageID{{Time: id.Time - 1, Tag: 1 << 40}, {Time: id.Time - 1, Tag: 1 << 40}}
		cursors[ds[0].Channel] = id
		next, err := s.Follow(keys, pushstore.FollowRequest{NoWait: true, HasCursor: true, Cursors: cursors})
		if err != nil {
			t.Fatal(err)
		}
		if next == nil {
			break
		}
		ds, _ = next.Take(nil)
		got = append(got, string(ds[0].Message.Body))
	}
	if len(got) != 2 {
		t.Fatalf("got %q; want a1 and b0 (%v): b0 was skipped by the answer's compound id", got, b0.ID)
	}
}

// TestStreamEndedWhileJoiningTakesNothing: a multiplexed stream on a and
// b is registered on a; a is deleted (its notification heard) before the
// stream registers on b, which stores b0 with min_message_recipients 1.
// The stream ends 410, sent nothing: b0 must not be counted as received
// (and removed, sent to no one).
func TestStreamEndedWhileJoiningTakesNothing(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	rule := pub()
	rule.MinBufferLength, rule.MinRecipients = 0, 1
	if _, err := s.Touch("a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish("b", &pushstore.Message{Body: []byte("b0")}, rule); err != nil {
		t.Fatal(err)
	}
	delivered := make(chan struct{}, 4)
	onDelivered := func() { delivered <- struct{}{} }
	deleted := false
	onFollowed := func(i int) {
		if i != 0 || deleted {
			return
		}
		if _, err := s.Delete("a"); err != nil {
			t.Error(err)
			return
		}
		deleted = true
		select {
		case <-delivered:
		case <-time.After(5 * time.Second):
			t.Error("a's deletion notification never came")
		}
	}
	testHookDelivered.Store(&onDelivered)
	testHookFollowed.Store(&onFollowed)
	t.Cleanup(func() { testHookDelivered.Store(nil); testHookFollowed.Store(nil) })
	sub, err := s.Follow([]string{"a", "b"}, pushstore.FollowRequest{QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	testHookFollowed.Store(nil)
	ds, end := sub.Take(nil)
	sub.Cancel()
	if !deleted || end != pushstore.Deleted || len(ds) != 0 {
		t.Fatalf("deleted %v; the stream got %d messages, end %v", deleted, len(ds), end)
	}
	if info, err := s.Info("b"); err != nil || info.Messages != 1 {
		t.Fatalf("b holds %d messages (%v); want 1: b0 was sent to no one", info.Messages, err)
	}
}
