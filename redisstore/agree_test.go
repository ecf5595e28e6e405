package redisstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// TestStoresAgree drives the memory store and the Redis store with the
// same random sequence of publications (every buffer and recipient rule,
// storing on and off), polls with cursors, info, PUTs and DELETEs, and
// requires the same answer from both at every step: the protocol is one,
// whichever store holds it. Ids differ only by the clock each store reads,
// so cursors are kept per store, as "after the n-th message".
func TestStoresAgree(t *testing.T) {
	srv := redistest.Shared(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	rs := NewFromClient(client, fmt.Sprintf("agree%d:", time.Now().UnixNano()), 0, zap.NewNop())
	t.Cleanup(func() { _ = rs.Close() })
	ms := pushstore.NewMemoryStore(64<<20, nil)
	stores := []pushstore.Store{ms, rs}

	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { agree(t, stores, seed) })
	}
}

// agree runs 600 random steps from seed on both stores.
func agree(t *testing.T, stores []pushstore.Store, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	keys := []string{fmt.Sprint("/", seed, "a"), fmt.Sprint("/", seed, "b"), fmt.Sprint("/", seed, "c")}
	// ids[store][key][n] is the id that store gave the key's n-th message.
	ids := make([]map[string][]pushstore.MessageID, 2)
	for i := range ids {
		ids[i] = map[string][]pushstore.MessageID{}
	}
	for step := range 600 {
		key := keys[rng.IntN(len(keys))]
		var got [2]string
		switch op := rng.IntN(10); {
		case op < 4: // publish with random settings
			opts := pushstore.PublishOptions{
				StoreMessages:        rng.IntN(6) != 0,
				MaxBufferLength:      rng.IntN(6),
				MinBufferLength:      rng.IntN(3),
				MinRecipients:        rng.IntN(3),
				DeleteOldestReceived: rng.IntN(4) == 0,
				ChannelTimeout:       time.Hour,
			}
			body := fmt.Sprintf("m%d", step)
			for i, st := range stores {
				res, err := st.Publish(key, &pushstore.Message{Body: []byte(body), ContentType: "text/plain"}, opts)
				if err == nil {
					ids[i][key] = append(ids[i][key], res.ID)
				}
				// Requested is left out: the seconds since the last request
				// may straddle a second on one store and not the other.
				got[i] = fmt.Sprintf("publish %+v: %v messages %d subscribers %d never %v delivered %d", opts, err,
					res.Info.Messages, res.Info.Subscribers, res.Info.Requested < 0, res.Delivered)
			}
		case op < 8: // poll: from the start, the newest, or after the n-th message
			n := len(ids[0][key])
			after := rng.IntN(n + 2) // 0: no cursor; n+1: newest
			create := rng.IntN(8) != 0
			for i, st := range stores {
				req := pushstore.SubscribeRequest{Create: create, Concurrency: pushstore.Broadcast}
				switch {
				case after == n+1:
					req.Start.Newest = true
				case after > 0:
					req.HasCursor, req.Cursor = true, ids[i][key][after-1]
				}
				res, err := st.Subscribe(key, req)
				body := "none"
				if res.Message != nil {
					body = string(res.Message.Body) + " " + res.Message.ContentType
				}
				got[i] = fmt.Sprintf("poll after %d of %d: %v %s", after, n, errors.Is(err, pushstore.ErrChannelNotFound), body)
			}
		case op == 8: // info, or PUT
			put := rng.IntN(2) == 0
			for i, st := range stores {
				var info pushstore.ChannelInfo
				var err error
				if put {
					info, err = st.Touch(key, time.Hour)
				} else {
					info, err = st.Info(key)
				}
				got[i] = fmt.Sprintf("info (put %v): %v messages %d subscribers %d never %v", put, err,
					info.Messages, info.Subscribers, info.Requested < 0)
			}
		default: // DELETE
			for i, st := range stores {
				info, err := st.Delete(key)
				got[i] = fmt.Sprintf("delete: %v messages %d", err, info.Messages)
				ids[i][key] = nil
			}
		}
		if got[0] != got[1] {
			t.Fatalf("step %d on %s: the stores disagree\n memory: %s\n redis:  %s", step, key, got[0], got[1])
		}
	}
}

// TestKeysExpire checks the keys' own expiry through a channel's
// life: every key that exists has one while all messages expire (so idle
// channels leave nothing behind), and not before the newest message
// expires, none while a message never expires, and one again once that
// message is trimmed away.
func TestKeysExpire(t *testing.T) {
	srv := redistest.Shared(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer client.Close()
	rs := NewFromClient(client, fmt.Sprintf("ttl%d:", time.Now().UnixNano()), 0, zap.NewNop())
	t.Cleanup(func() { _ = rs.Close() })
	ctx := t.Context()
	least := time.Hour - time.Minute // the newest message's expiry, less the test's time
	check := func(step string, persistent bool) {
		t.Helper()
		for _, k := range rs.Keys("/k")[:6] {
			ttl, err := client.PTTL(ctx, k).Result()
			switch {
			case err != nil:
				t.Fatal(err)
			case ttl == -2: // no such key
			case persistent && ttl != -1:
				t.Fatalf("%s: %s expires in %v, want no expiry", step, k, ttl)
			case !persistent && ttl < 0:
				t.Fatalf("%s: %s has no expiry (%v): it would outlive the channel", step, k, ttl)
			case !persistent && ttl < least:
				t.Fatalf("%s: %s expires in %v, before its newest message (%v)", step, k, ttl, least)
			}
		}
	}
	expiring := pushstore.PublishOptions{StoreMessages: true, MaxBufferLength: 3, MinBufferLength: 1, MinRecipients: 2,
		MessageTimeout: time.Hour, ChannelTimeout: time.Minute}
	for i := range 10 {
		if _, err := rs.Publish("/k", &pushstore.Message{Body: []byte(fmt.Sprint(i))}, expiring); err != nil {
			t.Fatal(err)
		}
		if _, err := rs.Subscribe("/k", pushstore.SubscribeRequest{Create: true}); err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprint("expiring publication ", i), false)
	}
	// A message that outlives the others: the keys' expiry follows it.
	longer := expiring
	longer.MessageTimeout = 2 * time.Hour
	if _, err := rs.Publish("/k", &pushstore.Message{Body: []byte("longer")}, longer); err != nil {
		t.Fatal(err)
	}
	least = 2*time.Hour - time.Minute
	check("a message that expires later", false)
	forever := expiring
	forever.MessageTimeout = 0
	if _, err := rs.Publish("/k", &pushstore.Message{Body: []byte("forever")}, forever); err != nil {
		t.Fatal(err)
	}
	check("a message that never expires", true)
	for i := range 3 {
		if _, err := rs.Publish("/k", &pushstore.Message{Body: []byte(fmt.Sprint("after", i))}, expiring); err != nil {
			t.Fatal(err)
		}
	}
	least = time.Hour - time.Minute // "longer" is trimmed away too
	check("the never-expiring message trimmed away", false)
	// Emptied (delete_oldest_received with no minimum), then refilled: the
	// message keys are created anew under an existing channel.
	emptying := expiring
	emptying.MinBufferLength, emptying.MinRecipients, emptying.DeleteOldestReceived = 0, 0, true
	for i := range 3 {
		if _, err := rs.Publish("/k", &pushstore.Message{Body: []byte(fmt.Sprint("once", i))}, emptying); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, err := rs.Subscribe("/k", pushstore.SubscribeRequest{Create: true}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := client.Exists(ctx, rs.Keys("/k")[1]).Result(); n != 0 {
		t.Fatal("the channel's message queue is not empty")
	}
	if _, err := rs.Publish("/k", &pushstore.Message{Body: []byte("refill")}, emptying); err != nil {
		t.Fatal(err)
	}
	check("refilled", false)
	if _, err := rs.Delete("/k"); err != nil {
		t.Fatal(err)
	}
	if n, _ := client.Exists(ctx, rs.Keys("/k")[:6]...).Result(); n != 0 {
		t.Fatalf("%d keys left after DELETE", n)
	}
}

// TestWaiterBeforeSubscription parks a waiter on a store whose
// notification subscription is not up yet (Caddy may start serving before
// the push app starts), publishes from another instance, then starts the
// store: the waiter must still get the message.
func TestWaiterBeforeSubscription(t *testing.T) {
	srv := redistest.Shared(t)
	prefix := fmt.Sprintf("early%d:", time.Now().UnixNano())
	late := NewFromClient(redis.NewClient(&redis.Options{Addr: srv.Addr()}), prefix, 0, zap.NewNop())
	t.Cleanup(func() { _ = late.Close() })
	other := NewFromClient(redis.NewClient(&redis.Options{Addr: srv.Addr()}), prefix, 0, zap.NewNop())
	t.Cleanup(func() { _ = other.Close() })

	res, err := late.Subscribe("/e", pushstore.SubscribeRequest{Create: true, Wait: true})
	if err != nil || res.Sub == nil {
		t.Fatalf("subscribe: %+v %v", res, err)
	}
	if _, err := other.Publish("/e", &pushstore.Message{Body: []byte("early")}, pub()); err != nil {
		t.Fatal(err)
	}
	late.Start() // connects and subscribes
	if body, _ := storetest.Await(t, res.Sub); body != "early" {
		t.Fatalf("the subscription that parked before the notes subscription got %q", body)
	}
}
