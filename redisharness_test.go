package caddypush

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// This file starts real redis-server processes for the tests: a standalone
// server, a 3-master Cluster and a Sentinel setup, all on 127.0.0.1 ports
// chosen here, from the redis-server binary of Debian's package (.ci/test
// installs it when it is missing).

// redisProc is one redis-server (or sentinel) process.
type redisProc struct {
	port int
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *redisProc) addr() string { return fmt.Sprintf("127.0.0.1:%d", p.port) }

// startRedisProc starts redis-server with config lines, in its own
// directory, and waits until it answers PING.
func startRedisProc(t testing.TB, lines ...string) *redisProc {
	t.Helper()
	return startRedisProcOn(t, 0, lines...)
}

// startRedisProcOn is startRedisProc on a given port (0: a free one).
func startRedisProcOn(t testing.TB, port int, lines ...string) *redisProc {
	t.Helper()
	p, err := newRedisProc(port, lines...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newRedisProc(port int, lines ...string) (*redisProc, error) {
	dir, err := os.MkdirTemp("", "caddy-push-redis")
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = freePortPair(); err != nil {
			return nil, err
		}
	}
	p := &redisProc{port: port, dir: dir}
	conf := []string{fmt.Sprintf("port %d", p.port), "bind 127.0.0.1", "dir " + dir,
		"protected-mode no", "daemonize no", "logfile redis.log"}
	sentinel := len(lines) > 0 && strings.HasPrefix(lines[0], "sentinel ")
	if !sentinel { // data survives a kill: every write is in the append-only file
		conf = append(conf, "save \"\"", "appendonly yes", "appendfsync always")
	}
	conf = append(conf, lines...)
	p.args = []string{filepath.Join(dir, "redis.conf")}
	if sentinel {
		p.args = append(p.args, "--sentinel")
	}
	if err := os.WriteFile(p.args[0], []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	return p, p.start()
}

// start runs the process (again, on the same port and data) and waits
// until it answers PING.
func (p *redisProc) start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server not found: install Debian's redis-server package (.ci/test does it)")
	}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Dir = p.dir
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return err
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
	c := redis.NewClient(&redis.Options{Addr: p.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		log, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
		if time.Now().After(deadline) {
			return fmt.Errorf("redis on %s did not start: %v\n%s", p.addr(), err, log)
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis on %s exited:\n%s", p.addr(), log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill stops the process at once (SIGKILL), as a crash would.
func (p *redisProc) kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// close kills the process and removes its data.
func (p *redisProc) close() {
	p.kill()
	_ = os.RemoveAll(p.dir)
}

// freePortPair returns a port free on 127.0.0.1 whose port+10000 (the
// Cluster bus port) is free too.
func freePortPair() (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+10000 > 65535 {
			continue
		}
		if bus, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+10000)); err == nil {
			bus.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port pair")
}

// sharedRedis is the standalone server of the parameterised suite, started
// on first use and stopped by TestMain.
var (
	sharedRedisOnce sync.Once
	sharedRedis     *redisProc
	sharedRedisErr  error
)

func testRedis(t testing.TB) *redisProc {
	t.Helper()
	sharedRedisOnce.Do(func() { sharedRedis, sharedRedisErr = newRedisProc(0) })
	if sharedRedisErr != nil {
		t.Fatal(sharedRedisErr)
	}
	return sharedRedis
}

// startSentinel starts a Sentinel watching the master at masterAddr as
// "mymaster", with a quorum of one and a half-second down-after.
func startSentinel(t *testing.T, masterAddr string) *redisProc {
	t.Helper()
	host, port, _ := strings.Cut(masterAddr, ":")
	p, err := newRedisProc(0, "sentinel monitor mymaster "+host+" "+port+" 1",
		"sentinel down-after-milliseconds mymaster 500", "sentinel failover-timeout mymaster 5000")
	if err == nil {
		t.Cleanup(p.close)
	} else {
		t.Fatal(err)
	}
	return p
}

// startCluster starts three masters and joins them into a Cluster.
func startCluster(t *testing.T) []*redisProc {
	t.Helper()
	var nodes []*redisProc
	var addrs []string
	for range 3 {
		n := startRedisProc(t, "cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 2000")
		t.Cleanup(n.close)
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr())
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitFor(t, "cluster state ok", func() bool {
		for _, n := range nodes {
			nc := redis.NewClient(&redis.Options{Addr: n.addr()})
			info, err := nc.ClusterInfo(context.Background()).Result()
			nc.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				return false
			}
		}
		return true
	})
	return nodes
}
