package caddypush

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// requireBrowser skips t when the browser tests cannot run here (no node,
// no chromium, or e2e/node_modules not installed: e2e/setup.sh installs
// them), or fails it when CADDY_PUSH_REQUIRE_BROWSER=1 (.ci/test sets it
// after running e2e/setup.sh).
func requireBrowser(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node")
	}
	if _, err := os.Stat("/usr/bin/chromium"); err != nil {
		missing = append(missing, "/usr/bin/chromium")
	}
	if _, err := os.Stat("e2e/node_modules/playwright-core"); err != nil {
		missing = append(missing, "e2e/node_modules")
	}
	if len(missing) == 0 {
		return
	}
	msg := "the browser tests need " + strings.Join(missing, ", ") + ": run e2e/setup.sh (.ci/test does)"
	if os.Getenv("CADDY_PUSH_REQUIRE_BROWSER") == "1" {
		t.Fatal(msg + " (CADDY_PUSH_REQUIRE_BROWSER=1: they may not be skipped)")
	}
	t.Skip(msg)
}

// TestBrowsers runs the browser suite (e2e/, node:test with playwright-core
// driving Debian's Chromium) against a Caddy binary: the browser's native
// EventSource and WebSocket (with and without ws+meta.nchan) and nchan's
// own client, NchanSubscriber.js, over WebSocket, EventSource and
// long-poll, each receiving messages published over HTTP and resuming
// without loss after the subscriber timeout forces it to reconnect. The
// pages are served by the Caddy under test (Chromium lets only pages from
// loopback open loopback WebSockets).
func TestBrowsers(t *testing.T) {
	requireBrowser(t)
	e2e, err := filepath.Abs("e2e")
	if err != nil {
		t.Fatal(err)
	}
	p := runCaddy(t, `	push_publisher /pub {
		max_message_buffer_length 64
	}
	push_subscriber /sub websocket eventsource long-poll
	push_subscriber /sub_timeout websocket eventsource long-poll {
		timeout 2s
	}
	push_subscriber /sub_multipart long-poll {
		longpoll_multipart_response on
	}
	push_subscriber /multi_timeout websocket eventsource long-poll {
		channel_id {query.id}-a {query.id}-b
		timeout 2s
	}
	handle_path /e2e/* {
		root * `+e2e+`
		file_server
	}`)
	// The transport suite's files, named: nothing else under e2e/ (the
	// chat's suite in e2e/chat/ needs example.Caddyfile's site, and runs in
	// TestChatBrowser).
	files, err := filepath.Glob(filepath.Join(e2e, "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no e2e/*.test.mjs: %v", err)
	}
	out, err := runNode(e2e, p.url, append([]string{"--test", "--test-concurrency=1"}, files...)...)
	if err != nil {
		t.Fatalf("the browser suite failed: %v\n%s", err, out)
	}
	t.Logf("browser suite:\n%s", lastLines(string(out), 12))
}

// runNode runs node in dir with PUSH_BASE=base and returns its output,
// within 3 minutes: then node and the browsers it started (its process
// group, which would otherwise hold the output pipe open) are killed.
func runNode(dir, base string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PUSH_BASE="+base) // and CHAT_SCREENSHOT, when set
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd.CombinedOutput()
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
