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
// redis-server per publication (redis-µs/op, from INFO commandstats: the
// wall time of the calls, which counts the time redis-server waits for a
// core on a busy machine; the publications that meet in Redis share a
// call) and redis-server's own CPU per publication, its network included
// (redis-cpu-µs/op, from INFO cpu).
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
	cpu0 := redisCPU(b, admin)
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
	b.ReportMetric((redisCPU(b, admin)-cpu0)*1e6/float64(b.N), "redis-cpu-µs/op")
	// per operation, not per call: alike calls are coalesced
	if us, ok := cmdStat(infoFields(b, admin, "commandstats"), command, "usec"); ok {
		b.ReportMetric(us/float64(b.N), "redis-µs/op")
	}
}

// redisCPU is redis-server's CPU time so far, in seconds (INFO cpu).
func redisCPU(b *testing.B, admin *redis.Client) float64 {
	f := infoFields(b, admin, "cpu")
	user, _ := strconv.ParseFloat(f["used_cpu_user"], 64)
	sys, _ := strconv.ParseFloat(f["used_cpu_sys"], 64)
	return user + sys
}

// BenchmarkPublishMany is BenchmarkPublish on 1000 channels, where
// publications rarely meet on one: each is a publish script of its own.
func BenchmarkPublishMany(b *testing.B) {
	body := []byte(strings.Repeat("x", 100))
	benchRedisScript(b, "evalsha", func(rs *Store, i int) error {
		opts := pub()
		_, err := rs.Publish("/bench"+strconv.Itoa(i%1000), &pushstore.Message{Body: body, ContentType: "text/plain"}, opts)
		return err
	})
}
