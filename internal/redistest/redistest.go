// Package redistest starts real redis-server processes for the tests: a
// standalone server, a 3-master Cluster and a Sentinel setup, all on
// 127.0.0.1 ports chosen here, from the redis-server binary of Debian's
// package. Without redis-server the tests that need it are skipped, with
// a message saying what to install, unless CADDY_PUSH_REQUIRE_REDIS=1
// (.ci/test sets it, after installing the package): then they fail.
package redistest

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

// Require skips t when redis-server is not installed, or fails it when
// CADDY_PUSH_REQUIRE_REDIS=1.
func Require(t testing.TB) {
	t.Helper()
	_, err1 := exec.LookPath("redis-server")
	_, err2 := exec.LookPath("redis-cli")
	if err1 == nil && err2 == nil {
		return
	}
	const msg = "redis-server not found: install Debian's redis-server package " +
		"(apt-get install redis-server), or run .ci/test, which does"
	if os.Getenv("CADDY_PUSH_REQUIRE_REDIS") == "1" {
		t.Fatal(msg + " (CADDY_PUSH_REQUIRE_REDIS=1: the Redis tests may not be skipped)")
	}
	t.Skip(msg)
}

// Server is one redis-server (or sentinel) process.
type Server struct {
	Port int
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is the server's host:port.
func (p *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// Start starts redis-server with config lines, in its own directory, and
// waits until it answers PING. The test's cleanup stops it and removes
// its data. Data survives a Kill and Restart: every write is in the
// append-only file, unless the lines say `appendonly no`.
func Start(t testing.TB, lines ...string) *Server {
	t.Helper()
	return StartOn(t, 0, lines...)
}

// StartOn is Start on a given port (0: a free one).
func StartOn(t testing.TB, port int, lines ...string) *Server {
	t.Helper()
	Require(t)
	p, err := start(port, lines...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func start(port int, lines ...string) (*Server, error) {
	dir, err := os.MkdirTemp("", "caddy-push-redis")
	if err != nil {
		return nil, err
	}
	if port == 0 {
		if port, err = FreePortPair(); err != nil {
			return nil, err
		}
	}
	p := &Server{Port: port, dir: dir}
	conf := []string{fmt.Sprintf("port %d", p.Port), "bind 127.0.0.1", "dir " + dir,
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
	return p, p.Restart()
}

// Restart runs the process (again, on the same port and data) and waits
// until it answers PING.
func (p *Server) Restart() error {
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
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return nil
		}
		log, _ := os.ReadFile(filepath.Join(p.dir, "redis.log"))
		if time.Now().After(deadline) {
			return fmt.Errorf("redis on %s did not start: %v\n%s", p.Addr(), err, log)
		}
		select {
		case <-p.done:
			return fmt.Errorf("redis on %s exited:\n%s", p.Addr(), log)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill stops the process at once (SIGKILL), as a crash would.
func (p *Server) Kill() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Close kills the process and removes its data.
func (p *Server) Close() {
	p.Kill()
	_ = os.RemoveAll(p.dir)
}

// FreePortPair returns a port free on 127.0.0.1 whose port+10000 (the
// Cluster bus port) is free too.
func FreePortPair() (int, error) {
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

var (
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)

// Shared returns the standalone server the tests of one test binary share,
// started on first use; CloseShared (from TestMain) stops it. Tests on it
// use key prefixes of their own.
func Shared(t testing.TB) *Server {
	t.Helper()
	Require(t)
	sharedOnce.Do(func() { shared, sharedErr = start(0) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// CloseShared stops the shared server if it was started.
func CloseShared() {
	if shared != nil {
		shared.Close()
	}
}

// Sentinel starts a Sentinel watching the master at masterAddr as
// "mymaster", with a quorum of one and a half-second down-after.
func Sentinel(t testing.TB, masterAddr string) *Server {
	t.Helper()
	host, port, _ := strings.Cut(masterAddr, ":")
	return Start(t, "sentinel monitor mymaster "+host+" "+port+" 1",
		"sentinel down-after-milliseconds mymaster 500", "sentinel failover-timeout mymaster 5000")
}

// Cluster starts three masters and joins them into a Cluster.
func Cluster(t testing.TB) []*Server {
	t.Helper()
	var nodes []*Server
	var addrs []string
	for range 3 {
		n := Start(t, "cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 2000")
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := true
		for _, n := range nodes {
			nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
			info, err := nc.ClusterInfo(context.Background()).Result()
			nc.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
		}
		if ok {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not reach cluster_state:ok within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop pauses the process (SIGSTOP): it keeps its sockets but answers
// nothing, as a host that hangs; Cont resumes it.
func (p *Server) Stop() { _ = p.cmd.Process.Signal(syscall.SIGSTOP) }

// Cont resumes a process Stop paused.
func (p *Server) Cont() { _ = p.cmd.Process.Signal(syscall.SIGCONT) }

// ClusterWithReplicas starts masters*2 nodes and joins them into a
// Cluster of masters, each with one replica, with cluster-node-timeout
// nodeTimeoutMS and lines added to every node's config. It returns the
// nodes; which are replicas is for the caller to ask (roles move with
// failovers).
func ClusterWithReplicas(t testing.TB, masters, nodeTimeoutMS int, lines ...string) []*Server {
	t.Helper()
	var nodes []*Server
	var addrs []string
	for range 2 * masters {
		conf := append([]string{"cluster-enabled yes", "cluster-config-file nodes.conf",
			fmt.Sprintf("cluster-node-timeout %d", nodeTimeoutMS)}, lines...)
		n := Start(t, conf...)
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}
	out, err := exec.Command("redis-cli", append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, up := true, 0
		for _, n := range nodes {
			nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
			info, err := nc.ClusterInfo(context.Background()).Result()
			repl, err2 := nc.Info(context.Background(), "replication").Result()
			nc.Close()
			if err != nil || err2 != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
			if strings.Contains(repl, "role:slave") && strings.Contains(repl, "master_link_status:up") &&
				strings.Contains(repl, "master_sync_in_progress:0") {
				up++
			}
		}
		if ok && up == masters {
			return nodes
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not reach cluster_state:ok with %d replicas up within 20 s (%d up)", masters, up)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
