package caddypush

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// These tests run the module in a real Caddy binary built from ./cmd/caddy,
// for what an in-process Caddy cannot show: process exit, and server
// timeouts on a fresh process with default settings.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// caddyBinary builds ./cmd/caddy once per test run.
func caddyBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs a Caddy binary")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "caddy-push-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "caddy")
		out, err := exec.Command("go", "build", "-o", binPath, "./cmd/caddy").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// freePorts returns n distinct ports free now: each listener stays open
// until all are chosen, or the kernel may hand the same port out twice (a
// Caddy given it for both its admin endpoint and its site binds both,
// SO_REUSEPORT, and the admin endpoint then answers the site's requests).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startCaddyProc starts the Caddy binary bin on the Caddyfile cfg, whose
// admin endpoint and site listen on 127.0.0.1 at the ports given, in the
// directory workDir ("": the test's), with its own HOME and log file. The
// process is killed when the test ends, and its log shown if it failed.
func startCaddyProc(t *testing.T, bin, cfg, workDir string, adminPort, httpPort int) *caddyProc {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "caddy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", file)
	cmd.Dir = workDir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &caddyProc{cmd: cmd, log: logPath, admin: fmt.Sprintf("127.0.0.1:%d", adminPort),
		url: fmt.Sprintf("http://127.0.0.1:%d", httpPort), done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("caddy log:\n%s", log)
		}
	})
	return p
}

// caddyProc is a running Caddy binary.
type caddyProc struct {
	cmd   *exec.Cmd
	log   string // its log file
	admin string
	url   string
	done  chan struct{} // closed when the process has exited
}

// runCaddy starts the binary on a Caddyfile whose site block is site, with
// fresh ports, and waits until it serves.
func runCaddy(t *testing.T, site string) *caddyProc {
	t.Helper()
	return runCaddyGlobal(t, "", site)
}

// runCaddyGlobal is runCaddy with more global options (lines of the global
// block, such as a push { } option).
func runCaddyGlobal(t *testing.T, global, site string) *caddyProc {
	t.Helper()
	return runCaddyServers(t, "", global, site)
}

// runCaddyServers is runCaddyGlobal with more lines in the global servers
// block (such as timeouts { }).
func runCaddyServers(t *testing.T, servers, global, site string) *caddyProc {
	t.Helper()
	bin := caddyBinary(t)
	ports := freePorts(t, 2)
	adminPort, httpPort := ports[0], ports[1]
	cfg := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tservers {\n\t\tprotocols h1 h2c\n%s\n\t}\n%s\n}\nhttp://127.0.0.1:%d {\n%s\n}\n",
		adminPort, servers, global, httpPort, site)
	p := startCaddyProc(t, bin, cfg, "", adminPort, httpPort)
	waitFor(t, "caddy to serve", func() bool {
		r, err := http.Get(p.url + "/pub?id=ready")
		if err == nil {
			r.Body.Close()
		}
		// 404: no such channel; 503: the store's backend is not up yet.
		return err == nil && (r.StatusCode == 404 || r.StatusCode == 503)
	})
	return p
}

// subscribers returns the waiter count a publisher GET reports.
func (p *caddyProc) subscribers(t *testing.T, ch string) int {
	r, err := doCtx(context.Background(), h1Client, "GET", p.url+"/pub?id="+ch, nil, "Accept", "text/json")
	if err != nil || r.status != 200 {
		return -1
	}
	var n int
	fmt.Sscanf(r.body[strings.Index(r.body, `"subscribers": `)+len(`"subscribers": `):], "%d", &n)
	return n
}

const pushSite = "\troute /pub {\n\t\tpush_publisher\n\t}\n\troute /sub {\n\t\tpush_subscriber\n\t}"

// TestStopReleasesWaiters parks long-polls on HTTP/1.1 and HTTP/2, runs
// `caddy stop`, and expects every waiter answered with 304 and the process
// gone promptly (Caddy's default grace period is eternal).
func TestStopReleasesWaiters(t *testing.T) {
	t.Parallel()
	p := runCaddy(t, pushSite)
	do(t, h1Client, "PUT", p.url+"/pub?id=stop", nil)
	results := make(chan resp, 6)
	for i := range 6 {
		c := h1Client
		if i%2 == 1 {
			c = h2Client
		}
		getAsync(c, p.url+"/sub?id=stop", results)
	}
	waitFor(t, "6 waiters", func() bool { return p.subscribers(t, "stop") == 6 })
	start := time.Now()
	out, err := exec.Command(caddyBinary(t), "stop", "--address", p.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy stop: %v\n%s", err, out)
	}
	for range 6 {
		if r := <-results; r.status != 304 {
			t.Fatalf("waiter got %d %q on stop, want 304", r.status, r.body)
		}
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("caddy did not exit within 15 s of caddy stop")
	}
	t.Logf("waiters released and process exited %v after caddy stop", time.Since(start).Round(time.Millisecond))
}

// TestIdleLongPoll holds long-polls (HTTP/1.1 and HTTP/2) with no traffic
// at all for three times Caddy's read and write idle timeouts, set to 1 s
// here (Caddy 2.11's are one minute by default: a long-poll of the default
// subscriber_timeout, none, waits far longer), then publishes: the timeouts
// must not have cut them.
func TestIdleLongPoll(t *testing.T) {
	t.Parallel()
	p := runCaddyServers(t, "\t\ttimeouts {\n\t\t\tread_body_idle 1s\n\t\t\twrite_idle 1s\n\t\t}", "", pushSite)
	results := make(chan resp, 2)
	for _, c := range []*http.Client{h1Client, h2Client} {
		getAsync(c, p.url+"/sub?id=idle", results)
	}
	waitFor(t, "2 waiters", func() bool { return p.subscribers(t, "idle") == 2 })
	select {
	case r := <-results:
		t.Fatalf("a long-poll ended before any publish: %d %q", r.status, r.body)
	case <-time.After(3 * time.Second):
	}
	r := do(t, h1Client, "POST", p.url+"/pub?id=idle", strings.NewReader("still there"))
	if r.status != 201 {
		t.Fatalf("publish after 3 s: %d %q", r.status, r.body)
	}
	protos := map[int]bool{}
	for range 2 {
		r := <-results
		if r.status != 200 || r.body != "still there" {
			t.Fatalf("waiter after 3 s: %d %q", r.status, r.body)
		}
		protos[r.proto] = true
	}
	if !protos[1] || !protos[2] {
		t.Fatalf("protocols seen: %v, want HTTP/1 and HTTP/2", protos)
	}
}

// serverGoroutines reads the goroutine count from the admin endpoint's pprof.
func (p *caddyProc) serverGoroutines(t *testing.T) int {
	t.Helper()
	// Idle keep-alive connections of our clients hold server goroutines too.
	h1Client.CloseIdleConnections()
	http.DefaultClient.CloseIdleConnections()
	r := do(t, h1Client, "GET", "http://"+p.admin+"/debug/pprof/goroutine?debug=1", nil)
	var n int
	if _, err := fmt.Sscanf(r.body, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine count: %v in %.60q", err, r.body)
	}
	return n
}

// serverRSS reads the server's resident memory in bytes from /proc.
func (p *caddyProc) serverRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func (p *caddyProc) storeWaiters(t *testing.T) int {
	var st pushstore.Stats
	r, err := doCtx(context.Background(), h1Client, "GET", "http://"+p.admin+"/push/stats", nil)
	if err != nil || json.Unmarshal([]byte(r.body), &st) != nil {
		return -1
	}
	return st.Waiters
}

// TestTenThousandWaiters holds 10,000 long-polls on 10,000 channels, reports
// the server's memory per waiter, answers every one with a publish, and
// checks that closing them frees every waiter and goroutine.
func TestTenThousandWaiters(t *testing.T) {
	const n = 10000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max // also for the Caddy child: Go restores no limit once we set one
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < n+1000 {
		t.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, n)
	}
	p := runCaddy(t, pushSite)
	goroutinesBefore, rssBefore := p.serverGoroutines(t), p.serverRSS(t)
	addr := strings.TrimPrefix(p.url, "http://")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /sub?id=ten%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, addr)
	}
	waitFor(t, "10,000 waiters", func() bool { return p.storeWaiters(t) == n })
	rssWith, goroutinesWith := p.serverRSS(t), p.serverGoroutines(t)
	t.Logf("%d waiters: server RSS %d -> %d MB (%d bytes per waiter), goroutines %d -> %d",
		n, rssBefore>>20, rssWith>>20, (rssWith-rssBefore)/n, goroutinesBefore, goroutinesWith)
	if per := (rssWith - rssBefore) / n; per > 100<<10 {
		t.Fatalf("%d bytes per idle waiter: memory is not bounded as it should be", per)
	}
	var pwg sync.WaitGroup
	for w := range 8 {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := w; i < n; i += 8 {
				r, err := doCtx(context.Background(), h1Client, "POST", fmt.Sprintf("%s/pub?id=ten%d", p.url, i), strings.NewReader(fmt.Sprint(i)))
				if err != nil || r.status != 201 {
					t.Errorf("publish %d: %v %d", i, err, r.status)
					return
				}
			}
		}()
	}
	pwg.Wait()
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
		b, _ := io.ReadAll(io.LimitReader(res.Body, 64))
		if res.StatusCode != 200 || string(b) != fmt.Sprint(i) {
			t.Fatalf("waiter %d: %d %q", i, res.StatusCode, b)
		}
	}
	// Park them again, then close every connection: nothing may stay behind.
	for i, c := range conns {
		fmt.Fprintf(c, "GET /sub?id=ten%d HTTP/1.1\r\nHost: %s\r\nIf-None-Match: 0\r\nIf-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT\r\n\r\n", i, addr)
	}
	waitFor(t, "10,000 waiters again", func() bool { return p.storeWaiters(t) == n })
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, "waiters to be freed", func() bool { return p.storeWaiters(t) == 0 })
	waitFor(t, "goroutines to return", func() bool { return p.serverGoroutines(t) <= goroutinesBefore+2 })
}
