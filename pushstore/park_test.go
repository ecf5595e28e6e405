package pushstore

import (
	"testing"
	"time"
)

// TestQueuePark: a parked queue hands each delivery to its sink and
// neither queues nor signals it; a sink that could not send all ends the
// parking and signals Ready; a queue with something queued, a one-shot
// queue and an ended queue do not park; a backlog preloaded while parked
// ends the parking and goes first, through the queue; PushQueued queues
// and wakes a parked subscriber.
func TestQueuePark(t *testing.T) {
	var q Queue
	q.Init(false, 1<<20)
	var got []string
	sent := true
	sink := func(d Delivery) bool {
		got = append(got, string(d.Message.Body))
		return sent
	}
	msg := func(b string) Delivery { return Delivery{Message: &Message{Body: []byte(b)}} }
	if !q.Park(sink, nil) {
		t.Fatal("an empty open queue did not park")
	}
	if ok, open := q.Push(msg("a")); !ok || !open {
		t.Fatalf("push to a parked queue: %v %v", ok, open)
	}
	if len(got) != 1 || got[0] != "a" {
		t.Fatalf("sink got %q", got)
	}
	select {
	case <-q.Ready():
		t.Fatal("a delivery the sink sent signalled Ready")
	default:
	}
	if ds, _ := q.Take(nil); len(ds) != 0 {
		t.Fatalf("a delivery the sink sent was queued too: %d", len(ds))
	}

	sent = false // the socket is full: the sink keeps the rest
	q.Push(msg("b"))
	<-q.Ready()
	q.Push(msg("c")) // no longer parked: queued
	if ds, _ := q.Take(nil); len(got) != 2 || len(ds) != 1 || string(ds[0].Message.Body) != "c" {
		t.Fatalf("after a short send: sink %q, queued %d", got, len(ds))
	}
	q.Unpark()

	q.Push(msg("d"))
	if q.Park(sink, nil) {
		t.Fatal("parked with a delivery queued")
	}
	q.Take(nil)
	if !q.Park(sink, nil) {
		t.Fatal("did not park once emptied")
	}
	q.Preload([]Delivery{msg("old")})
	q.Push(msg("e"))
	if ds, _ := q.Take(nil); len(ds) != 2 || string(ds[0].Message.Body) != "old" || string(ds[1].Message.Body) != "e" {
		t.Fatalf("a backlog preloaded while parked: %d deliveries", len(ds))
	}
	q.Unpark()

	if !q.Park(sink, nil) {
		t.Fatal("did not park again")
	}
	q.PushQueued(msg("f")) // another core's share: the subscriber is woken
	<-q.Ready()
	if ds, _ := q.Take(nil); len(got) != 2 || len(ds) != 1 || string(ds[0].Message.Body) != "f" {
		t.Fatalf("PushQueued to a parked queue: sink %q, queued %d", got, len(ds))
	}
	q.Unpark()
	if n := Inline(10); n < 1 || n > 10 {
		t.Fatalf("Inline(10) = %d", n)
	}

	var once Queue
	once.Init(true, 0)
	if once.Park(sink, nil) {
		t.Fatal("a one-shot queue parked")
	}
	q.Close(Deleted)
	if q.Park(sink, nil) {
		t.Fatal("an ended queue parked")
	}
}

// TestQueueCountsSending: what the subscriber took, or a parked write
// left, counts against the limit until Sent, so a client that takes
// nothing cannot hold a full batch and a full queue besides; one delivery
// is still queued while none is; a backlog taken does not count.
func TestQueueCountsSending(t *testing.T) {
	var q Queue
	q.Init(false, 1000)
	sized := func(n int) Delivery { return Delivery{Message: &Message{Body: make([]byte, n-deliveryOverhead)}} }
	q.Push(sized(500))
	q.Push(sized(400))
	q.Take(nil) // 900 being written
	if ok, open := q.Push(sized(200)); !ok || !open {
		t.Fatal("one delivery did not fit beside a batch being written")
	}
	if ok, open := q.Push(sized(100)); ok || open || !q.Ended() {
		t.Fatalf("900 being written and 300 queued fit a limit of 1000: %v %v", ok, open)
	}

	var r Queue
	r.Init(false, 1000)
	r.Push(sized(500))
	r.Push(sized(400))
	r.Take(nil)
	r.Sent() // written: only what is queued counts
	for range 4 {
		if ok, _ := r.Push(sized(250)); !ok {
			t.Fatal("after Sent, 1000 bytes did not fit a limit of 1000")
		}
	}

	var p Queue // a parked write that left bytes
	p.Init(false, 1000)
	p.Park(func(Delivery) bool { return false }, nil)
	p.Push(sized(900))
	p.Push(sized(80))
	if ok, _ := p.Push(sized(100)); ok {
		t.Fatal("900 left by a parked write did not count")
	}

	var b Queue // a taken backlog does not count
	b.Init(false, 1000)
	b.Preload([]Delivery{sized(900)})
	b.Take(nil)
	b.Push(sized(500))
	if ok, _ := b.Push(sized(500)); !ok {
		t.Fatal("a taken backlog counted against the limit")
	}
}

// TestQueueParkWakes: a parked queue calls its wake with each signal of
// Ready (a short send, a delivery queued, the end), not for a delivery the
// sink sent, and never after Unpark.
func TestQueueParkWakes(t *testing.T) {
	var q Queue
	q.Init(false, 1<<20)
	wakes := 0
	wake := func() { wakes++ }
	sent := true
	sink := func(Delivery) bool { return sent }
	msg := Delivery{Message: &Message{Body: []byte("m")}}
	q.Park(sink, wake)
	q.Push(msg)
	if wakes != 0 {
		t.Fatalf("a delivery the sink sent woke the subscriber %d times", wakes)
	}
	sent = false
	q.Push(msg) // a short send
	if wakes != 1 {
		t.Fatalf("a short send woke it %d times, want 1", wakes)
	}
	q.Push(msg) // queued
	if wakes != 2 {
		t.Fatalf("a queued delivery woke it %d times in all, want 2", wakes)
	}
	q.Take(nil)
	q.Unpark()
	q.Push(msg)
	if wakes != 2 {
		t.Fatalf("a delivery after Unpark woke it (%d)", wakes)
	}
	q.Take(nil)
	q.Park(sink, wake)
	q.Close(Deleted)
	if wakes != 3 {
		t.Fatalf("the end woke it %d times in all, want 3", wakes)
	}
}

// TestFollowDuringReleaseAll: a stream that registers while ReleaseAll
// runs (here from inside its registration, between its first check of
// the store's closing and the channel's lock) ends with Shutdown; before,
// it stayed open on the released store, reached by no publisher and told
// by nothing to reconnect.
func TestFollowDuringReleaseAll(t *testing.T) {
	var s *MemoryStore
	var hook func()
	s = NewMemoryStore(1<<20, func() time.Time {
		if h := hook; h != nil {
			hook = nil
			h()
		}
		return time.Now()
	})
	if _, err := s.Touch("g/a", time.Hour); err != nil {
		t.Fatal(err)
	}
	hook = func() { s.ReleaseAll() } // join reads the clock before it locks the channel
	sub, err := s.Follow([]string{"g/a"}, FollowRequest{QueueBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, end := sub.Take(nil); end != Shutdown {
		t.Fatalf("a stream registered while the store was released: end %v, want Shutdown", end)
	}
	if st, _ := s.Stats(); st.Waiters != 0 {
		t.Fatalf("%d waiters left on a released store", st.Waiters)
	}
}
