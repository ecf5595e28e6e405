package caddypush

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// TestMultiplexedPollKeepsOlderStoredMessage: a multiplexed long-poll on
// a and b, with b0 stored on b in an earlier second, is answered with a1,
// published on a while the poll registers on b (the memory store's clock
// hook runs the publication between the two joins). The answer's compound
// id (pollMany: runningFrom, advance, header) is then echoed, as a client
// does, by the next poll (here an interval-poll: a look at both channels):
// b0 must still come. The docs (transports.md, Multiplexed subscriptions)
// say "the stored one stays for the next poll, whose compound id has not
// moved past it".
func TestMultiplexedPollKeepsOlderStoredMessage(t *testing.T) {
	sec := int64(1_800_000_000)
	var hook func()
	s := pushstore.NewMemoryStore(1<<20, func() time.Time {
		if h := hook; h != nil {
			hook = nil
			h()
		}
		return time.Unix(sec, 0)
	})
	opts := pushstore.PublishOptions{StoreMessages: true, MaxBufferLength: 10, ChannelTimeout: time.Hour}
	if _, err := s.Touch("a", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Publish("b", &pushstore.Message{Body: []byte("b0")}, opts); err != nil {
		t.Fatal(err)
	}
	sec++ // a1 comes a second later
	published := false
	hook = func() { // a's join reads the clock: arm b's
		hook = func() {
			published = true
			if _, err := s.Publish("a", &pushstore.Message{Body: []byte("a1")}, opts); err != nil {
				t.Error(err)
			}
		}
	}
	keys := []string{"a", "b"}
	sub, err := s.Follow(keys, pushstore.FollowRequest{OneShot: true, Create: true})
	if err != nil || sub == nil {
		t.Fatalf("follow: %v %v", sub, err)
	}
	ds, _ := sub.Take(nil)
	sub.Cancel()
	if !published || len(ds) != 1 {
		t.Fatalf("first poll: published %v, answered %d messages", published, len(ds))
	}
	first := string(ds[0].Message.Body)
	ids := runningFrom(nil, len(keys))
	ids.advance(ds[0].Channel, ds[0].Message.ID)
	lm, etag := ids.header()

	r, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
	r.Header.Set("If-Modified-Since", lm)
	r.Header.Set("If-None-Match", etag)
	cursors, err := streamCursor(r, len(keys))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{first}
	for range 3 { // b0 and a1 between them, then nothing
		next, err := s.Follow(keys, pushstore.FollowRequest{NoWait: true, HasCursor: true, Cursors: cursors})
		if err != nil {
			t.Fatal(err)
		}
		if next == nil {
			break
		}
		ds, _ := next.Take(nil)
		got = append(got, string(ds[0].Message.Body))
		ids := runningFrom(cursors, len(keys))
		ids.advance(ds[0].Channel, ds[0].Message.ID)
		lm, etag := ids.header()
		r.Header.Set("If-Modified-Since", lm)
		r.Header.Set("If-None-Match", etag)
		if cursors, err = streamCursor(r, len(keys)); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 2 || !(got[0] == "a1" && got[1] == "b0" || got[0] == "b0" && got[1] == "a1") {
		t.Fatalf("polls echoing the compound id got %q (first Etag %q, Last-Modified %q); want a1 and b0, once each", got, etag, lm)
	}
}

// TestMultiplexedStreamIDsFollowPublicationOrder: a publication on a
// reads the clock (second 100) and is held up before it uses it (the
// clock hook runs a publication on b, a second later by the clock, in
// between). A stream on a and b is sent b1 then a1, in publication order,
// and resuming from the id it was given after a1 must send neither again.
// The memory store used to take a1's id time before b1's and its Seq
// after b1's, so a1 came second with an earlier second, the stream's
// compound id went back a second with it, and the resume sent b1 again.
func TestMultiplexedStreamIDsFollowPublicationOrder(t *testing.T) {
	sec := int64(1_800_000_000)
	var hook func()
	s := pushstore.NewMemoryStore(1<<20, func() time.Time {
		v := sec // read, then held up (the hook) before it is used
		if h := hook; h != nil {
			hook = nil
			h()
		}
		return time.Unix(v, 0)
	})
	opts := pushstore.PublishOptions{StoreMessages: true, MaxBufferLength: 10, ChannelTimeout: time.Hour}
	keys := []string{"a", "b"}
	sub, err := s.Follow(keys, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Cancel()
	hook = func() {
		sec++
		if _, err := s.Publish("b", &pushstore.Message{Body: []byte("b1")}, opts); err != nil {
			t.Error(err)
		}
	}
	if _, err := s.Publish("a", &pushstore.Message{Body: []byte("a1")}, opts); err != nil {
		t.Fatal(err)
	}
	ds, _ := sub.Take(nil)
	ids := streamIDs(nil, len(keys))
	var sent []string
	for _, d := range ds {
		ids.advance(d.Channel, d.Message.ID)
		sent = append(sent, string(d.Message.Body)+" "+string(ids.appendID(nil)))
	}
	if len(ds) != 2 {
		t.Fatalf("stream got %q", sent)
	}
	if ds[1].Message.ID.Time < ds[0].Message.ID.Time {
		t.Errorf("stream sent %q: an id of an earlier second after a later one", sent)
	}
	resumeSendsNothing(t, s, keys, string(ids.appendID(nil)), sent)
}

// resumeSendsNothing follows keys from id, as a stream resumed with it
// does, and fails if anything is sent (sent: what the first stream got).
func resumeSendsNothing(t *testing.T, s *pushstore.MemoryStore, keys []string, id string, sent []string) {
	t.Helper()
	cursors, err := parseID(id, len(keys))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Follow(keys, pushstore.FollowRequest{HasCursor: true, Cursors: cursors, QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Cancel()
	if ds, _ := again.Take(nil); len(ds) != 0 {
		t.Fatalf("stream sent %q; resumed from %s it was sent %q again", sent, id, ds[0].Message.Body)
	}
}
