package pushstore

import (
	"fmt"
	"testing"
)

// BenchmarkPublish measures storing a 100-byte message on one channel with
// a full buffer (every publish trims the oldest).
func BenchmarkPublish(b *testing.B) {
	s := NewMemoryStore(1<<30, nil)
	o := defaultPub
	o.MaxBufferLength = 2000
	body := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Publish("/bench", &Message{Body: body, ContentType: "text/plain"}, o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel publishes from every P to 1000 channels.
func BenchmarkPublishParallel(b *testing.B) {
	s := NewMemoryStore(1<<30, nil)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("/c%d", i)
	}
	body := make([]byte, 100)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Publish(keys[i%len(keys)], &Message{Body: body, ContentType: "text/plain"}, defaultPub); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkFanout parks N waiters, publishes once and collects every wake;
// it reports the cost per delivery.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{100, 1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := NewMemoryStore(1<<30, nil)
			body := make([]byte, 100)
			subs := make([]Subscription, n)
			b.ReportAllocs()
			for b.Loop() {
				var cur MessageID
				for i := range subs {
					r, err := s.Subscribe("/fan", SubscribeRequest{Cursor: cur, HasCursor: true, Create: true, Wait: true})
					if err != nil || r.Sub == nil {
						b.Fatalf("subscribe: %v %+v", err, r)
					}
					subs[i] = r.Sub
				}
				res, err := s.Publish("/fan", &Message{Body: body}, defaultPub)
				if err != nil {
					b.Fatal(err)
				}
				for _, sub := range subs {
					<-sub.Ready()
				}
				s.Delete("/fan")
				_ = res
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// BenchmarkSubscribeStored is a catching-up subscriber: a cursor lookup
// that finds a stored message in a 2000-message buffer.
func BenchmarkSubscribeStored(b *testing.B) {
	s := NewMemoryStore(1<<30, nil)
	o := defaultPub
	o.MaxBufferLength = 2000
	var ids []MessageID
	for range 2000 {
		r, _ := s.Publish("/sub", &Message{Body: make([]byte, 100)}, o)
		ids = append(ids, r.ID)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r, _ := s.Subscribe("/sub", SubscribeRequest{Cursor: ids[i%1999], HasCursor: true})
		if r.Message == nil {
			b.Fatal("no message")
		}
		i++
	}
}

// BenchmarkFollowBacklog is a stream resuming 10 messages behind on one
// channel: it joins, takes and counts its backlog, and leaves.
func BenchmarkFollowBacklog(b *testing.B) {
	s := NewMemoryStore(1<<30, nil)
	var ids []MessageID
	for range 20 {
		r, _ := s.Publish("/sub", &Message{Body: make([]byte, 100)}, defaultPub)
		ids = append(ids, r.ID)
	}
	req := FollowRequest{Cursors: []MessageID{ids[9]}, HasCursor: true, QueueBytes: 1 << 20}
	b.ReportAllocs()
	for b.Loop() {
		sub, err := s.Follow([]string{"/sub"}, req)
		if err != nil {
			b.Fatal(err)
		}
		sub.Cancel()
	}
}
