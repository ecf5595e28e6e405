package pushstore

import (
	"testing"
	"time"
)

// TestStreamEndedWhileJoiningTakesNothing: a multiplexed stream on a and b
// registers on a, then a is deleted while it registers on b, which stores
// b0 with min_message_recipients 1. The stream ends 410 and is sent
// nothing: b0 must not be counted as received by it (and removed, sent to
// no one).
func TestStreamEndedWhileJoiningTakesNothing(t *testing.T) {
	var hook func()
	s := NewMemoryStore(1<<20, func() time.Time {
		if h := hook; h != nil {
			hook = nil
			h()
		}
		return time.Now()
	})
	rule := PublishOptions{StoreMessages: true, MaxBufferLength: 10, ChannelTimeout: time.Hour, MinRecipients: 1}
	if _, err := s.Touch("a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish("b", &Message{Body: []byte("b0")}, rule); err != nil {
		t.Fatal(err)
	}
	deleted := false
	hook = func() { // a's join reads the clock: arm b's
		hook = func() {
			_, err := s.Delete("a")
			deleted = err == nil
		}
	}
	sub, err := s.Follow([]string{"a", "b"}, FollowRequest{QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	ds, end := sub.Take(nil)
	if !deleted || end != Deleted || len(ds) != 0 {
		t.Fatalf("deleted %v; the stream got %d messages, end %d", deleted, len(ds), end)
	}
	if info, _ := s.Info("b"); info.Messages != 1 || s.Counters().Delivered != 0 {
		t.Fatalf("b holds %d messages, %d delivered; want 1 (b0, sent to no one), 0", info.Messages, s.Counters().Delivered)
	}
}
