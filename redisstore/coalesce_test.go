package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// coalesceStore is a started store on a redis-server of its own (whose
// statistics and pauses are the test's alone), and an admin client.
func coalesceStore(t *testing.T) (*Store, *redis.Client) {
	srv, s := ownServer(t, "coalesce:")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = admin.Close() })
	return s, admin
}

// together runs call n times at once while Redis holds the first call's
// script (CLIENT PAUSE WRITE holds scripts; on every node, with several
// admins: a Cluster's), until the other n-1 have gathered behind it
// (gathered reports how many have, -1 before the first is in Redis); then
// it lets Redis go and returns, in the order the calls came, their
// answers, and how many scripts Redis ran for them.
func together[R any](t *testing.T, admins []*redis.Client, n int, gathered func() int, call func() (R, error)) ([]R, int64) {
	t.Helper()
	ctx := context.Background()
	for _, admin := range admins {
		if err := admin.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.Do(ctx, "CLIENT", "PAUSE", 20000, "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
	}
	paused := true
	unpause := func() error {
		var first error
		for _, admin := range admins {
			if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	defer func() {
		if paused {
			_ = unpause()
		}
	}()
	out := make([]R, n)
	errs := make(chan error, n)
	start := func(i int) {
		go func() {
			r, err := call()
			out[i] = r
			errs <- err
		}()
	}
	start(0)
	waitFor(t, "the first call to be in Redis", func() bool { return gathered() == 0 })
	for i := 1; i < n; i++ {
		start(i)
		waitFor(t, "the next call to gather behind it", func() bool { return gathered() == i })
	}
	if err := unpause(); err != nil {
		t.Fatal(err)
	}
	paused = false
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var calls int64
	for _, admin := range admins {
		calls += scriptCalls(t, admin)
	}
	return out, calls
}

// TestCoalescedLongPolls: long-polls of one channel and cursor that come
// while one of theirs is being registered in Redis are registered together
// by one script call, which counts them all: two scripts, not one per
// long-poll. Each long-poll still gets its own answer: a wait that a
// publication ends, counted in Redis (the publisher's 201 and delivery
// count), or the stored message its cursor is behind, with the recipient
// rule counting every member.
func TestCoalescedLongPolls(t *testing.T) {
	s, admin := coalesceStore(t)
	ctx := context.Background()
	const n = 20
	poll := func(req pushstore.SubscribeRequest) ([]pushstore.SubscribeResult, int64) {
		pk := pollKey{"c", cursorScore(req.HasCursor, req.Cursor, req.Start), req.Create}
		return together(t, []*redis.Client{admin}, n, func() int { return s.polls.waiting(pk) },
			func() (pushstore.SubscribeResult, error) { return s.Subscribe("c", req) })
	}

	subs, calls := poll(pushstore.SubscribeRequest{Create: true, Wait: true, Start: pushstore.Start{Newest: true}})
	if calls != 2 {
		t.Errorf("%d long-polls registered by %d scripts, want 2 (the first, then the rest together)", n, calls)
	}
	if got, err := admin.HGet(ctx, s.Keys("c")[5], s.instance).Int(); err != nil || got != n {
		t.Errorf("Redis counts %d waiters here (%v), want %d", got, err, n)
	}
	opts := pub()
	opts.MinRecipients = 2 * n // kept: its recipients are counted below
	res, err := s.Publish("c", &pushstore.Message{Body: []byte("hello")}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != n {
		t.Errorf("publication delivered to %d, want %d", res.Delivered, n)
	}
	for i, r := range subs {
		if r.Sub == nil {
			t.Fatalf("long-poll %d: no subscription (message %v)", i, r.Message)
		}
		if got := take(t, r.Sub); got != "hello" {
			t.Errorf("long-poll %d got %q", i, got)
		}
		r.Sub.Cancel()
	}

	// n long-polls behind the stored message: each gets it at once, and
	// its recipient rule counts n (plus the n it was delivered to above).
	got, calls := poll(pushstore.SubscribeRequest{Create: true, Wait: true, HasCursor: true})
	if calls != 2 {
		t.Errorf("%d catching-up long-polls took %d scripts, want 2", n, calls)
	}
	for i, r := range got {
		if r.Message == nil || string(r.Message.Body) != "hello" || r.Message.ID != res.ID {
			t.Fatalf("long-poll %d: answer %+v, want the stored message", i, r)
		}
	}
	rule, err := admin.HGet(ctx, s.Keys("c")[4], res.ID.String()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(rule); len(f) != 3 || f[2] != strconv.Itoa(2*n) {
		t.Errorf("recipient rule %q, want %d received", rule, 2*n)
	}
}

// TestCoalescedPublications: publications of one channel and settings
// that come while one of theirs is in Redis are published by one script
// call (of at most maxPublications), in the order they came, each as if
// alone: its own id, after the
// one before; the long-poll that waited is answered by the first alone
// (the publisher's delivery count: the first reaches it and the stream,
// the others the stream); each reports the stored messages after it; the
// stream gets them all, in order, once.
func TestCoalescedPublications(t *testing.T) {
	s, admin := coalesceStore(t)
	const n = maxPublications + 2 // the first alone, then a full call, then one more
	opts := pub()
	opts.MaxBufferLength = 100
	if _, err := s.Publish("c", &pushstore.Message{Body: []byte("first")}, opts); err != nil {
		t.Fatal(err)
	}
	stream, err := s.Follow([]string{"c"}, pushstore.FollowRequest{HasCursor: true,
		Cursors: []pushstore.MessageID{{Time: 1 << 40}}, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Cancel()
	poll, err := s.Subscribe("c", pushstore.SubscribeRequest{Wait: true, Start: pushstore.Start{Newest: true}})
	if err != nil || poll.Sub == nil {
		t.Fatalf("long-poll: %+v, %v", poll, err)
	}
	defer poll.Sub.Cancel()

	var next atomic.Int64
	results, calls := together(t, []*redis.Client{admin}, n, func() int { return s.pubs.waiting(pubKey{"c", encodeOptions(opts)}) },
		func() (pushstore.PublishResult, error) {
			body := fmt.Sprint(next.Add(1))
			return s.Publish("c", &pushstore.Message{Body: []byte(body)}, opts)
		})
	if calls != 3 {
		t.Errorf("%d publications took %d scripts, want 3", n, calls)
	}
	for i, r := range results {
		want := 1 // the stream
		if i == 0 {
			want = 2 // and the long-poll
		}
		if r.Delivered != want {
			t.Errorf("publication %d delivered to %d, want %d", i, r.Delivered, want)
		}
		if r.Info.Messages != i+2 {
			t.Errorf("publication %d: %d stored, want %d", i, r.Info.Messages, i+2)
		}
		if i > 0 && !r.ID.After(results[i-1].ID) {
			t.Errorf("publication %d: id %v does not follow %v", i, r.ID, results[i-1].ID)
		}
	}
	if got := take(t, poll.Sub); got != "1" {
		t.Errorf("the long-poll got %q, want the first publication", got)
	}
	got := storetest.Bodies(storetest.AwaitN(t, stream, n))
	for i, body := range got {
		if body != strconv.Itoa(i+1) {
			t.Fatalf("the stream got %q, want 1 to %d in order, once", got, n)
		}
	}
}

// TestCoalescedOverflow: publications coalesced into one call that push
// messages out of the buffer (dropped together, after the call's last
// publication) leave what the same publications leave one call each: every
// publication's stored count, the newest max_message_buffer_length
// messages, and the channel's bytes.
func TestCoalescedOverflow(t *testing.T) {
	s, admin := coalesceStore(t)
	const n = maxPublications + 2 // the first alone, then a full call, then one more
	opts := pub()
	opts.MaxBufferLength = 3
	body := func(i int64) []byte { return []byte(strings.Repeat("x", int(i))) } // each its own length
	for _, key := range []string{"c", "d"} {
		if _, err := s.Publish(key, &pushstore.Message{Body: []byte("first")}, opts); err != nil {
			t.Fatal(err)
		}
	}
	var next atomic.Int64
	joint, calls := together(t, []*redis.Client{admin}, n, func() int { return s.pubs.waiting(pubKey{"c", encodeOptions(opts)}) },
		func() (pushstore.PublishResult, error) {
			return s.Publish("c", &pushstore.Message{Body: body(next.Add(1))}, opts)
		})
	if calls != 3 {
		t.Fatalf("%d publications took %d scripts, want 3", n, calls)
	}
	for i := range n {
		alone, err := s.Publish("d", &pushstore.Message{Body: body(int64(i + 1))}, opts)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := joint[i].Info.Messages, min(i+2, opts.MaxBufferLength); got != want || alone.Info.Messages != want {
			t.Errorf("publication %d: %d stored together, %d alone, want %d", i, got, alone.Info.Messages, want)
		}
	}
	stored := func(key string) (pushstore.ChannelStat, []string) {
		ctx := context.Background()
		ids, err := admin.ZRange(ctx, s.Keys(key)[1], 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		var payloads []string
		for _, id := range ids {
			v, err := admin.HGet(ctx, s.Keys(key)[2], id).Result()
			if err != nil {
				t.Fatal(err)
			}
			payloads = append(payloads, v[17:]) // the publication time's 16 digits and newline off
		}
		st, err := s.Channel(key)
		if err != nil {
			t.Fatal(err)
		}
		return st, payloads
	}
	var want []string
	wantBytes := keyCost("c")
	for i := n - opts.MaxBufferLength + 1; i <= n; i++ {
		want = append(want, "\n\n"+string(body(int64(i)))) // no content type, no event
		wantBytes += int64(i + pushstore.MessageOverhead)
	}
	for _, key := range []string{"c", "d"} {
		st, payloads := stored(key)
		if fmt.Sprint(payloads) != fmt.Sprint(want) {
			t.Errorf("%s stored %q, want the newest %d: %q", key, payloads, opts.MaxBufferLength, want)
		}
		if st.Messages != len(want) || st.Bytes != wantBytes {
			t.Errorf("%s: %d messages in %d bytes, want %d in %d", key, st.Messages, st.Bytes, len(want), wantBytes)
		}
	}
}

// scriptCalls returns the scripts Redis ran since its statistics were
// reset.
func scriptCalls(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	f := infoFields(t, c, "commandstats")
	evalsha, _ := cmdStat(f, "evalsha", "calls")
	eval, _ := cmdStat(f, "eval", "calls")
	return int64(evalsha + eval)
}
