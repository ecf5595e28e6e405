package redisstore

import (
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestOneShotKeepsWhatWasCounted publishes on a multiplexed long-poll's
// first channel once it waits there, before it registers on its second,
// which has a stored message: the message pushed to it was counted as
// received (and with min_message_recipients 1 removed), so it must be the
// answer; the second channel's stays stored for the next poll.
func TestOneShotKeepsWhatWasCounted(t *testing.T) {
	s := newStore(t)
	waitFor(t, "the notes subscription", s.subscribed.Load)
	rule := pub()
	rule.MinBufferLength, rule.MinRecipients = 0, 1
	for _, key := range []string{"a", "b"} {
		if _, err := s.Touch(key, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// b0 is published once the poll waits on a (a poll that finds a
	// stored message when it looks at its channels first is answered
	// with it, and waits nowhere), then a1.
	during := publishHeard(t, s, "a", "a1", rule)
	published := false
	onFollowed := func(i int) {
		if i == 0 {
			published = true
			if _, err := s.Publish("b", &pushstore.Message{Body: []byte("b0")}, rule); err != nil {
				t.Error(err)
			}
			during()
		}
	}
	testHookFollowed.Store(&onFollowed)
	t.Cleanup(func() { testHookFollowed.Store(nil) })

	sub, err := s.Follow([]string{"a", "b"}, pushstore.FollowRequest{OneShot: true, HasCursor: true,
		Cursors: []pushstore.MessageID{{}, {}}})
	if err != nil {
		t.Fatal(err)
	}
	testHookFollowed.Store(nil)
	ds, end := sub.Take(nil)
	sub.Cancel()
	if !published {
		t.Fatal("the publication after the first channel's registration did not run")
	}
	if len(ds) != 1 || end != pushstore.Done || string(ds[0].Message.Body) != "a1" {
		t.Fatalf("answered %d messages (end %v), want a1", len(ds), end)
	}
	for key, want := range map[string]int{"a": 0, "b": 1} {
		info, err := s.Info(key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Messages != want {
			t.Errorf("%s holds %d messages, want %d", key, info.Messages, want)
		}
	}
}
