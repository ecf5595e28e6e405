package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
)

// BenchmarkRedisPublish publishes 100-byte messages into a 2000-message
// buffer through the Redis store (a redis-server of its own, without
// persistence), from 4 goroutines. Besides the round
// trip (ns/op) it reports what the publish script costs inside
// redis-server per publication (redis-µs/op, from INFO commandstats; the
// publications that meet in Redis share a call).
func BenchmarkPublish(b *testing.B) {
	benchRedisScript(b, "evalsha", func(rs *Store, i int) error {
		opts := pub()
		opts.MaxBufferLength = 2000
		_, err := rs.Publish("/bench", &pushstore.Message{Body: []byte(strings.Repeat("x", 100)), ContentType: "text/plain"}, opts)
		return err
	})
}

// BenchmarkRedisPoll reads a stored message with a cursor (an
// interval-poll) through the Redis store, as each re-poll of a fan-out does.
func BenchmarkPoll(b *testing.B) {
	benchRedisScript(b, "evalsha", func(rs *Store, i int) error {
		if i == -1 { // setup
			_, err := rs.Publish("/poll", &pushstore.Message{Body: []byte("m")}, pub())
			return err
		}
		_, err := rs.Subscribe("/poll", pushstore.SubscribeRequest{HasCursor: true, Create: true})
		return err
	})
}

func benchRedisScript(b *testing.B, command string, op func(rs *Store, i int) error) {
	srv := redistest.Start(b, "appendonly no") // no fsync per write: the script's own cost
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	rs := NewFromClient(client, fmt.Sprintf("bench%d:", time.Now().UnixNano()), 0, zap.NewNop())
	defer rs.Close()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	if err := op(rs, -1); err != nil {
		b.Fatal(err)
	}
	admin.ConfigResetStat(b.Context())
	b.SetParallelism(2) // 2 x GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if err := op(rs, i); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	info, _ := admin.Info(b.Context(), "commandstats").Result()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_"+command+":"); ok {
			for _, f := range strings.Split(v, ",") {
				if total, ok := strings.CutPrefix(f, "usec="); ok {
					// per operation, not per call: alike calls are coalesced
					us, _ := strconv.ParseFloat(strings.TrimSpace(total), 64)
					b.ReportMetric(us/float64(b.N), "redis-µs/op")
				}
			}
		}
	}
}
