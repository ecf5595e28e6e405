package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestSubscriberMadeChannelsDoNotLinger: a channel that a subscriber made
// and nobody published to expires a minute after its last subscriber
// left (a long-poll that went, an interval-poll that found nothing, on
// one channel or several), not
// its channel_timeout: long-polls on fresh ids, which cost nothing, held
// Redis's memory and the budget for an hour (a security review measured
// 400 of them locking publishers out with 507). A channel a publisher
// made (PUT, or a publication) keeps its channel_timeout, and so does one
// someone waits on.
func TestSubscriberMadeChannelsDoNotLinger(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	ttl := func(key string) time.Duration {
		t.Helper()
		d, err := s.client.PTTL(ctx, s.Keys(key)[0]).Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	wait := pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}}

	res, err := s.Subscribe("left", wait)
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	if d := ttl("left"); d < 10*time.Minute {
		t.Fatalf("a channel someone waits on expires in %v", d)
	}
	res.Sub.Cancel() // uncounts it in Redis before it returns
	if d := ttl("left"); d > time.Minute {
		t.Fatalf("a channel a long-poll made expires %v after the long-poll left", d)
	}

	if res, err := s.Subscribe("polled", pushstore.SubscribeRequest{Create: true, Start: pushstore.Start{Newest: true}}); err != nil || res.Sub != nil {
		t.Fatal(res, err)
	}
	if d := ttl("polled"); d > time.Minute {
		t.Fatalf("a channel an interval-poll made expires in %v", d)
	}

	if sub, err := s.Follow([]string{"ma", "mb"}, pushstore.FollowRequest{NoWait: true, Create: true, Start: pushstore.Start{Newest: true}}); err != nil || sub != nil {
		t.Fatal(sub, err)
	}
	for _, key := range []string{"ma", "mb"} {
		if d := ttl(key); d > time.Minute {
			t.Fatalf("a channel a multiplexed interval-poll made expires in %v", d)
		}
	}

	// A multiplexed long-poll looks at its channels (an interval-poll's
	// call), then waits on them: long expiries while it waits.
	poll, err := s.Follow([]string{"oa", "ob"}, pushstore.FollowRequest{OneShot: true, Create: true, Start: pushstore.Start{Newest: true}})
	if err != nil || poll == nil {
		t.Fatal(poll, err)
	}
	if d := ttl("ob"); d < 10*time.Minute {
		t.Fatalf("a channel a multiplexed long-poll waits on expires in %v", d)
	}
	poll.Cancel()
	if d := ttl("ob"); d > time.Minute {
		t.Fatalf("a channel a multiplexed long-poll made expires %v after it left", d)
	}

	if _, err := s.Touch("put", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish("published", &pushstore.Message{Body: []byte("m")}, pub()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"put", "published"} {
		res, err := s.Subscribe(key, wait)
		if err != nil || res.Sub == nil {
			t.Fatal(res, err)
		}
		res.Sub.Cancel()
	}
	if _, err := s.Touch("left", time.Hour); err != nil { // a publisher's now
		t.Fatal(err)
	}
	res, err = s.Subscribe("left", wait)
	if err != nil || res.Sub == nil {
		t.Fatal(res, err)
	}
	res.Sub.Cancel()
	for _, key := range []string{"put", "published", "left"} {
		if d := ttl(key); d < 10*time.Minute {
			t.Errorf("channel %s, made or taken by a publisher, expires %v after its subscriber left", key, d)
		}
	}
}
