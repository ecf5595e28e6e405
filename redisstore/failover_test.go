package redisstore

// Redis Cluster and Sentinel under change: channels across nodes, and
// failovers that lose the last writes. Every scenario runs real
// redis-server processes (internal/redistest).

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddypush/caddy-push/internal/redistest"
	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/pushstore/storetest"
)

// failoverStores starts n stores on addrs (a Cluster's seeds, or Sentinels with
// sentinel set) sharing prefix, each subscribed.
func failoverStores(t *testing.T, addrs []string, sentinel, prefix string, n int) []*Store {
	t.Helper()
	var out []*Store
	for range n {
		s, err := New(Options{Addresses: addrs, Sentinel: sentinel, KeyPrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		t.Cleanup(func() { _ = s.Close() })
		waitFor(t, "the notes subscription", s.subscribed.Load)
		out = append(out, s)
	}
	return out
}

func addrsOf(nodes []*redistest.Server) []string {
	var a []string
	for _, n := range nodes {
		a = append(a, n.Addr())
	}
	return a
}

// masterAddr is the address of the master that holds key on s's Cluster.
func masterAddr(t *testing.T, s *Store, key string) string {
	t.Helper()
	c, err := s.client.(*redis.ClusterClient).MasterForKey(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return c.Options().Addr
}

// channelsOn returns, for each distinct master of s's Cluster, a channel
// name whose keys live there, in order of discovery; notesAddr is where
// s's notes channel lives.
func channelsOn(t *testing.T, s *Store) (byMaster map[string]string, notesAddr string) {
	t.Helper()
	byMaster = map[string]string{}
	for i := 0; i < 200 && len(byMaster) < 3; i++ {
		k := fmt.Sprintf("c%d", i)
		a := masterAddr(t, s, s.Keys(k)[0])
		if _, ok := byMaster[a]; !ok {
			byMaster[a] = k
		}
	}
	return byMaster, masterAddr(t, s, s.notes)
}

// channelOffNotes names a channel whose master is not the node of s's
// notes connection, that master, and the notes connection's node.
func channelOffNotes(t *testing.T, s *Store) (key, master, notesAddr string) {
	t.Helper()
	byMaster, notesAddr := channelsOn(t, s)
	for addr, k := range byMaster {
		if addr != notesAddr {
			return k, addr, notesAddr
		}
	}
	t.Fatalf("every channel is on the notes connection's node %s", notesAddr)
	return "", "", ""
}

func nodeByAddr(nodes []*redistest.Server, addr string) *redistest.Server {
	for _, n := range nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

func replInfo(addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Info(ctx, "replication").Result()
	return s
}

// replicaOf returns the node replicating the master at addr.
func replicaOf(t *testing.T, nodes []*redistest.Server, addr string) *redistest.Server {
	t.Helper()
	_, port, _ := strings.Cut(addr, ":")
	for _, n := range nodes {
		info := replInfo(n.Addr())
		if strings.Contains(info, "role:slave") && strings.Contains(info, "master_port:"+port+"\r") {
			return n
		}
	}
	t.Fatalf("no replica of %s", addr)
	return nil
}

// collect takes what sub is sent until a delivery with body last comes or
// d passes, and returns the bodies and the end.
func collect(sub pushstore.Subscription, last string, d time.Duration) ([]string, pushstore.End) {
	var got []string
	deadline := time.After(d)
	for {
		select {
		case <-sub.Ready():
		case <-deadline:
			return got, pushstore.Open
		}
		ds, end := sub.Take(nil)
		for _, x := range ds {
			got = append(got, string(x.Message.Body))
		}
		sub.Sent()
		if end != pushstore.Open {
			return got, end
		}
		if len(got) > 0 && got[len(got)-1] == last {
			return got, end
		}
	}
}

// loseUnreplicated makes the master at m acknowledge writes its replica r
// never gets: r is paused, its link cut, and the master is seen with no
// replica connected.
func loseUnreplicated(t *testing.T, m, r *redistest.Server) {
	t.Helper()
	mc := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer mc.Close()
	ctx := context.Background()
	if n, err := mc.Wait(ctx, 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica: %d %v", n, err)
	}
	r.Stop()
	if err := mc.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica link down", func() bool {
		info, _ := mc.Info(ctx, "replication").Result()
		return strings.Contains(info, "connected_slaves:0")
	})
}

// publishUntil publishes body on key through s until it is accepted, up to
// d, and returns the refusals and how long it took.
func publishUntil(t *testing.T, s *Store, key, body string, d time.Duration) (int, time.Duration, pushstore.PublishResult) {
	t.Helper()
	start := time.Now()
	refused := 0
	var lastErr error
	for time.Since(start) < d {
		r, err := s.Publish(key, &pushstore.Message{Body: []byte(body)}, pub())
		if err == nil {
			return refused, time.Since(start), r
		}
		var ue *pushstore.UnavailableError
		if !errors.As(err, &ue) {
			t.Fatalf("publish %s: not a 503: %v", body, err)
		}
		lastErr = err
		refused++
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("publish %s: refused for %v (%d times), last %v", body, d, refused, lastErr)
	return 0, 0, pushstore.PublishResult{}
}

// TestClusterAcrossNodes: channels on three masters, the notes
// channel on one of them; instance A publishes, instance B's long-polls,
// streams, a multiplexed stream and a multiplexed long-poll across the
// three nodes receive.
func TestClusterAcrossNodes(t *testing.T) {
	nodes := redistest.Cluster(t)
	st := failoverStores(t, addrsOf(nodes), "", "x:", 2)
	a, b := st[0], st[1]
	byMaster, notesAddr := channelsOn(t, b)
	if len(byMaster) != 3 {
		t.Fatalf("channels on %d masters", len(byMaster))
	}
	var keys []string
	for addr, k := range byMaster {
		t.Logf("channel %s on %s (notes on %s)", k, addr, notesAddr)
		keys = append(keys, k)
	}
	var lps, streams []pushstore.Subscription
	for _, k := range keys {
		lps = append(lps, parkNewest(t, b, k, true))
		streams = append(streams, openStream(t, b, k))
	}
	multi, err := b.Follow(keys, pushstore.FollowRequest{Create: true, QueueBytes: 1 << 20, Start: pushstore.Start{Newest: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer multi.Cancel()
	oneShot, err := b.Follow(keys, pushstore.FollowRequest{Create: true, OneShot: true, Start: pushstore.Start{Newest: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer oneShot.Cancel()
	for i, k := range keys {
		r := storetest.Publish(t, a, k, "m-"+k, pub())
		if want := 2 + 1; i == 0 {
			want++ // the multiplexed long-poll
			if r.Info.Subscribers != want {
				t.Errorf("publish on %s counted %d subscribers, want %d", k, r.Info.Subscribers, want)
			}
		}
	}
	for i, k := range keys {
		if body, _ := storetest.Await(t, lps[i]); body != "m-"+k {
			t.Errorf("long-poll on %s got %q", k, body)
		}
		if got := storetest.Bodies(storetest.AwaitN(t, streams[i], 1)); got[0] != "m-"+k {
			t.Errorf("stream on %s got %q", k, got)
		}
	}
	if got := storetest.Bodies(storetest.AwaitN(t, multi, 3)); strings.Join(got, ",") != "m-"+strings.Join(keys, ",m-") {
		t.Errorf("the multiplexed stream got %q", got)
	}
	if body, _ := storetest.Await(t, oneShot); body != "m-"+keys[0] {
		t.Errorf("the multiplexed long-poll got %q", body)
	}
}

// TestClusterFailoverKeepsLaterMessages: a Cluster master with a
// replica acknowledges one publication (P1) that its replica never gets,
// and is killed; the replica is promoted. Docs allow P1 to be lost. The
// publications acknowledged after the failover (P2, P3) must reach the
// stream and the long-poll of instance B, whose notes connection is on
// another node and stays up.
func TestClusterFailoverKeepsLaterMessages(t *testing.T) {
	nodes := redistest.ClusterWithReplicas(t, 3, 1000, "cluster-replica-validity-factor 0")
	st := failoverStores(t, addrsOf(nodes), "", "fo:", 2)
	a, b := st[0], st[1]
	key, maddr, notesAddr := channelOffNotes(t, b)
	m := nodeByAddr(nodes, maddr)
	r := replicaOf(t, nodes, maddr)
	t.Logf("channel %s on master %s (replica %s); notes on %s", key, maddr, r.Addr(), notesAddr)

	stream := openStream(t, b, key)
	storetest.Publish(t, a, key, "P0", pub())
	if got, _ := collect(stream, "P0", 5*time.Second); len(got) != 1 {
		t.Fatalf("stream before: %q", got)
	}
	loseUnreplicated(t, m, r)
	p1 := storetest.Publish(t, a, key, "P1", pub())
	if got, _ := collect(stream, "P1", 5*time.Second); len(got) != 1 {
		t.Fatalf("stream P1: %q", got)
	}
	lp, err := b.Subscribe(key, pushstore.SubscribeRequest{Cursor: p1.ID, HasCursor: true, Wait: true})
	if err != nil || lp.Sub == nil {
		t.Fatalf("long-poll after P1: %+v %v", lp, err)
	}
	defer lp.Sub.Cancel()

	killed := time.Now()
	m.Kill()
	r.Cont()
	waitWithin(t, 30*time.Second, "the replica promoted", func() bool {
		return strings.Contains(replInfo(r.Addr()), "role:master")
	})
	promoted := time.Since(killed)
	// go-redis would route the slot to the dead master for up to a minute
	// (TestClusterFailoverServesSoon): reload the slot map here.
	for _, s := range st {
		s.client.(*redis.ClusterClient).ReloadState(context.Background())
	}
	refused, took, p2 := publishUntil(t, a, key, "P2", 90*time.Second)
	t.Logf("promoted %v after the kill; P2 accepted %v after the kill (%v publishing), %d refusals (503)",
		promoted, time.Since(killed), took, refused)
	ids, _ := redis.NewClient(&redis.Options{Addr: r.Addr()}).ZRange(context.Background(), a.Keys(key)[1], 0, -1).Result()
	t.Logf("P1 %v, P2 %v; stored on the new master: %v", p1.ID, p2.ID, ids)
	storetest.Publish(t, a, key, "P3", pub())

	got, end := collect(stream, "P3", 10*time.Second)
	lpGot, lpEnd := collect(lp.Sub, "P2", 5*time.Second)
	lpBody := strings.Join(lpGot, ",")
	if strings.Join(got, ",") != "P2,P3" || lpBody != "P2" {
		t.Fatalf("after the failover the stream got %q (end %v), want [P2 P3]; the long-poll (cursor P1) got %q (end %v), want P2",
			got, end, lpBody, lpEnd)
	}
}

// waitWithin is waitFor with a bound of its own.
func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out (%v) waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var _ = strconv.Itoa

// TestSentinelFailoverKeepsLaterMessages: the same as
// TestClusterFailoverKeepsLaterMessages under Sentinel, where the
// notes connection breaks with the master: the resubscription catches the
// stream up, but the catch-up keeps the stream's gen when the channel's is
// lower (catchUp: "if gen > m.gen"), so the first publication after the
// failover, at the gen the lost one had, is not applied.
func TestSentinelFailoverKeepsLaterMessages(t *testing.T) {
	master := redistest.Start(t)
	replica := redistest.Start(t, "replicaof "+strings.Replace(master.Addr(), ":", " ", 1))
	sentinel := redistest.Sentinel(t, master.Addr())
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	defer sc.Close()
	ctx := context.Background()
	waitFor(t, "sentinel to see the replica", func() bool {
		reps, err := sc.Replicas(ctx, "mymaster").Result()
		return err == nil && len(reps) == 1
	})
	waitWithin(t, 30*time.Second, "the replica's first sync", func() bool {
		info := replInfo(replica.Addr())
		return strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0")
	})
	st := failoverStores(t, []string{sentinel.Addr()}, "mymaster", "sf:", 2)
	a, b := st[0], st[1]
	stream := openStream(t, b, "c")
	storetest.Publish(t, a, "c", "P0", pub())
	if got, _ := collect(stream, "P0", 5*time.Second); len(got) != 1 {
		t.Fatalf("stream before: %q", got)
	}
	loseUnreplicated(t, master, replica)
	p1 := storetest.Publish(t, a, "c", "P1", pub())
	if got, _ := collect(stream, "P1", 5*time.Second); len(got) != 1 {
		t.Fatalf("stream P1: %q", got)
	}
	lp, err := b.Subscribe("c", pushstore.SubscribeRequest{Cursor: p1.ID, HasCursor: true, Wait: true})
	if err != nil || lp.Sub == nil {
		t.Fatalf("long-poll after P1: %+v %v", lp, err)
	}
	defer lp.Sub.Cancel()
	epoch := b.epoch.Load()
	killed := time.Now()
	master.Kill()
	replica.Cont()
	waitWithin(t, 30*time.Second, "sentinel to promote the replica", func() bool {
		addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result()
		return err == nil && addr[0]+":"+addr[1] == replica.Addr()
	})
	promoted := time.Since(killed)
	waitWithin(t, 30*time.Second, "B subscribed again", func() bool {
		return b.epoch.Load() > epoch && b.subscribed.Load()
	})
	waitWithin(t, 10*time.Second, "B's catch-up", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		lc := b.local["c"]
		return lc != nil && lc.rechecking == 0
	})
	refused, took, _ := publishUntil(t, a, "c", "P2", 60*time.Second)
	t.Logf("promoted %v after the kill; P2 accepted %v after the kill (%v publishing, %d refusals)",
		promoted, time.Since(killed), took, refused)
	storetest.Publish(t, a, "c", "P3", pub())
	got, end := collect(stream, "P3", 10*time.Second)
	lpGot, lpEnd := collect(lp.Sub, "P2", 5*time.Second)
	lpOK := strings.Join(lpGot, ",") == "P2" || (len(lpGot) == 0 && lpEnd == pushstore.Retry)
	if strings.Join(got, ",") != "P2,P3" || !lpOK {
		t.Fatalf("after the failover the stream got %q (end %v), want [P2 P3]; the long-poll (cursor P1) got %q (end %v), want P2 or 304",
			got, end, lpGot, lpEnd)
	}
}

// TestClusterFailoverServesSoon: a Cluster master is killed and its
// replica promoted within about 2 s (cluster-node-timeout 1000); the
// publications on its slots should be accepted again within a few seconds
// of the promotion. go-redis keeps routing the slots to the dead master
// (connection refused, 503) until its slot map is a minute old: nothing
// makes it reload the map on a connection error.
func TestClusterFailoverServesSoon(t *testing.T) {
	nodes := redistest.ClusterWithReplicas(t, 3, 1000, "cluster-replica-validity-factor 0")
	st := failoverStores(t, addrsOf(nodes), "", "fw:", 2)
	a, b := st[0], st[1]
	key, maddr, _ := channelOffNotes(t, b)
	m := nodeByAddr(nodes, maddr)
	r := replicaOf(t, nodes, maddr)
	lp := parkNewest(t, b, key, true)
	mc := redis.NewClient(&redis.Options{Addr: maddr})
	if n, err := mc.Wait(context.Background(), 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d %v", n, err)
	}
	mc.Close()
	killed := time.Now()
	m.Kill()
	waitWithin(t, 30*time.Second, "the replica promoted", func() bool {
		return strings.Contains(replInfo(r.Addr()), "role:master")
	})
	promoted := time.Since(killed)
	refused, took, res := publishUntil(t, a, key, "after", 90*time.Second)
	t.Logf("promoted %v after the kill; accepted %v after the promotion (%d refusals); %d subscribers counted",
		promoted, took, refused, res.Info.Subscribers)
	if body, _ := storetest.Await(t, lp); body != "after" {
		t.Errorf("the parked long-poll got %q", body)
	}
	if took > 10*time.Second {
		t.Fatalf("publishers got 503 for %v after the replica was promoted (%d refusals)", took, refused)
	}
}
