package caddypush

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// These tests run the Caddy binary on example.Caddyfile itself: the chat
// (html/, its locations under /chat/) and the seed's /publish and
// /activity.

// runExample starts the Caddy binary on example.Caddyfile, rewritten only
// for its addresses: the admin endpoint and the site on free loopback
// ports instead of localhost:2019 and :8080. It runs in the repository
// root, so the site's `root * html` is this checkout's html/.
func runExample(t *testing.T) *caddyProc {
	t.Helper()
	example, err := os.ReadFile("example.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	bin := caddyBinary(t)
	ports := freePorts(t, 2)
	adminPort, httpPort := ports[0], ports[1]
	cfg := strings.Replace(string(example), "{\n", fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n", adminPort), 1)
	cfg = strings.Replace(cfg, "\n:8080 {\n", fmt.Sprintf("\n:%d {\n\tbind 127.0.0.1\n", httpPort), 1)
	if !strings.Contains(cfg, fmt.Sprintf("admin 127.0.0.1:%d", adminPort)) || !strings.Contains(cfg, fmt.Sprintf(":%d {", httpPort)) {
		t.Fatal("could not rewrite example.Caddyfile's addresses for the test")
	}
	root, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	p := startCaddyProc(t, bin, cfg, root, adminPort, httpPort)
	waitWithin(t, 30*time.Second, "caddy to serve example.Caddyfile", func() bool {
		select {
		case <-p.done:
			log, _ := os.ReadFile(p.log)
			t.Fatalf("caddy exited:\n%s", log)
		default:
		}
		r, err := http.Get(p.url + "/")
		if err == nil {
			r.Body.Close()
		}
		return err == nil && r.StatusCode == 200
	})
	return p
}

// chatInfo is a chat room's channel info, from GET /chat/pub.
type chatInfo struct {
	Messages    int `json:"messages"`
	Requested   int `json:"requested"`
	Subscribers int `json:"subscribers"`
}

func roomInfo(t *testing.T, p *caddyProc, room string) chatInfo {
	t.Helper()
	r := do(t, h1Client, "GET", p.url+"/chat/pub?room="+room, nil, "Accept", "application/json")
	var info chatInfo
	if r.status != 200 || json.Unmarshal([]byte(r.body), &info) != nil {
		t.Fatalf("GET /chat/pub?room=%s: %d %q", room, r.status, r.body)
	}
	return info
}

// TestChatSite checks example.Caddyfile's site over plain HTTP: the pages,
// the seed's /publish and /activity as they were, and the chat's
// locations with the protections of the one browsers send through. (The
// chat in a browser is TestChatBrowser.)
func TestChatSite(t *testing.T) {
	p := runExample(t)
	get := func(t *testing.T, path string, hdr ...string) resp {
		return do(t, h1Client, "GET", p.url+path, nil, hdr...)
	}
	post := func(t *testing.T, path, body string, hdr ...string) resp {
		return do(t, h1Client, "POST", p.url+path, strings.NewReader(body), hdr...)
	}

	t.Run("pages", func(t *testing.T) {
		for path, ctype := range map[string]string{
			"/": "text/html", "/chat.js": "text/javascript", "/chat.css": "text/css",
			"/favicon.svg": "image/svg+xml", "/favicon.ico": "image/svg+xml",
		} {
			r := get(t, path)
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), ctype) {
				t.Errorf("GET %s: %d %s, want 200 %s", path, r.status, r.header.Get("Content-Type"), ctype)
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
			}
		}
		if r := get(t, "/"); !strings.Contains(r.body, "caddy-push chat") || strings.Contains(r.body, "<script>") {
			t.Errorf("GET /: not the chat page, or an inline script (the CSP forbids it):\n%s", r.body)
		}
	})

	t.Run("seed locations unchanged", func(t *testing.T) {
		// /publish from this machine, /activity a long-poll for a client
		// with no special headers, and no header of the pages added.
		r := post(t, "/publish?id=seed", "first", "Content-Type", "text/plain")
		if r.status != 202 {
			t.Fatalf("POST /publish: %d %q", r.status, r.body)
		}
		r = get(t, "/activity?id=seed")
		if r.status != 200 || r.body != "first" || r.header.Get("Content-Type") != "text/plain" {
			t.Fatalf("GET /activity: %d %q %v", r.status, r.body, r.header)
		}
		if r.header.Get("Content-Security-Policy") != "" {
			t.Errorf("/activity got the pages' headers: %v", r.header)
		}
		waiting := make(chan resp, 1)
		getAsync(h1Client, p.url+"/activity?id=seed", waiting, r.cursor().headers()...)
		waitFor(t, "the long-poll to wait", func() bool {
			r := get(t, "/publish?id=seed", "Accept", "application/json")
			return strings.Contains(r.body, `"subscribers": 1}`)
		})
		if r := post(t, "/publish?id=seed", "second", "Content-Type", "text/plain"); r.status != 201 {
			t.Fatalf("POST /publish to a waiter: %d %q", r.status, r.body)
		}
		if r := <-waiting; r.status != 200 || r.body != "second" {
			t.Fatalf("the waiting long-poll: %d %q", r.status, r.body)
		}
		// The chat's rooms are another channel group.
		if info := roomInfo(t, p, "seed"); info.Messages != 0 {
			t.Errorf("chat room seed has %d messages from /publish?id=seed", info.Messages)
		}
	})

	t.Run("send location", func(t *testing.T) {
		room := "site-send"
		if info := roomInfo(t, p, room); info != (chatInfo{Requested: -1}) {
			t.Errorf("an unused room: %+v, want 0 messages, requested -1, 0 subscribers", info)
		}
		for _, m := range []string{"PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"} {
			r := do(t, h1Client, m, p.url+"/chat/pub?room="+room, nil)
			if r.status != 405 || r.header.Get("Allow") != "GET, POST" {
				t.Errorf("%s /chat/pub: %d Allow %q, want 405 Allow \"GET, POST\"", m, r.status, r.header.Get("Allow"))
			}
		}
		msg := `{"nick":"Ada","text":"hi"}`
		if r := post(t, "/chat/pub?room="+room, msg, "Content-Type", "application/json", "Origin", "http://evil.example"); r.status != 403 {
			t.Errorf("POST from another origin: %d %q, want 403", r.status, r.body)
		}
		if r := post(t, "/chat/pub?room="+room, msg, "Content-Type", "application/json", "Origin", "null"); r.status != 403 {
			t.Errorf("POST from origin null: %d %q, want 403", r.status, r.body)
		}
		if r := post(t, "/chat/pub?room="+room, msg, "Content-Type", "application/json", "Origin", p.url); r.status != 202 {
			t.Errorf("POST from the page's origin: %d %q, want 202", r.status, r.body)
		}
		if r := post(t, "/chat/pub?room="+room, "<b>from curl</b>", "Content-Type", "text/html"); r.status != 202 {
			t.Errorf("POST without Origin (curl): %d %q, want 202", r.status, r.body)
		}
		if r := post(t, "/chat/pub?room="+room, strings.Repeat("x", 2049), "Content-Type", "application/json"); r.status != 413 {
			t.Errorf("POST of 2049 bytes: %d %q, want 413", r.status, r.body)
		}
		if r := post(t, "/chat/pub?room="+room, strings.Repeat("x", 2048), "Content-Type", "application/json"); r.status != 202 {
			t.Errorf("POST of 2048 bytes: %d %q, want 202", r.status, r.body)
		}
		// The stored content types: JSON kept, text/html made text/plain.
		first := get(t, "/chat/sub?room="+room)
		second := get(t, "/chat/sub?room="+room, first.cursor().headers()...)
		if first.body != msg || first.header.Get("Content-Type") != "application/json" {
			t.Errorf("first message: %q %q", first.body, first.header.Get("Content-Type"))
		}
		if second.body != "<b>from curl</b>" || second.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("a text/html message was stored as %q %q, want text/plain", second.body, second.header.Get("Content-Type"))
		}
		if info := roomInfo(t, p, room); info.Messages != 3 {
			t.Errorf("room info after 3 messages: %+v", info)
		}
		if r := get(t, "/chat/pub?room="+room, "Origin", "http://evil.example"); r.status != 403 {
			t.Errorf("GET room info from another origin: %d, want 403", r.status)
		}
		// No publishing over WebSocket: a handshake is a GET, which the
		// guards above let through, and its Content-Type would type every
		// message it sends (text/html included).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, strings.Replace(p.url, "http", "ws", 1)+"/chat/pub?room="+room,
			&websocket.DialOptions{HTTPHeader: http.Header{"Content-Type": {"text/html"}}})
		if err == nil {
			c.CloseNow()
		}
		if err == nil || resp == nil || resp.StatusCode != 403 {
			t.Errorf("a WebSocket to /chat/pub: %v %v, want 403", resp, err)
		}
	})

	t.Run("room names", func(t *testing.T) {
		for _, q := range []string{"", "room=", "room=Lobby", "room=a/b", "room=a%2Fb", "room=..",
			"room=" + strings.Repeat("a", 33), "room=a&room=b", "id=lobby"} {
			for _, path := range []string{"/chat/sub?", "/chat/pub?"} {
				r := get(t, path+q)
				if r.status != 400 {
					t.Errorf("GET %s%s: %d %q, want 400", path, q, r.status, r.body)
				}
			}
			if r := post(t, "/chat/pub?"+q, "x"); r.status != 400 {
				t.Errorf("POST /chat/pub?%s: %d, want 400", q, r.status)
			}
		}
		if r := post(t, "/chat/pub?room="+strings.Repeat("a", 32), "x"); r.status != 202 {
			t.Errorf("a 32-character room: %d", r.status)
		}
	})

	t.Run("history on join", func(t *testing.T) {
		room := "site-history"
		for i := 1; i <= 25; i++ {
			post(t, "/chat/pub?room="+room, fmt.Sprint(i))
		}
		// A subscriber with no cursor starts at the last 20: message 6.
		r := get(t, "/chat/sub?room="+room)
		if r.status != 200 || r.body != "6" {
			t.Fatalf("first long-poll of a room with 25 messages: %d %q, want message 6", r.status, r.body)
		}
		s := openSSE(t, h1Client, p.url+"/chat/sub?room="+room)
		defer s.close()
		for want := 6; want <= 25; want++ {
			if ev := s.message(t); ev.data != fmt.Sprint(want) {
				t.Fatalf("EventSource history: %q, want %d", ev.data, want)
			}
		}
	})
}

// TestChatBrowser runs the chat's browser suite (e2e/chat/chat-suite.mjs:
// node:test with playwright-core driving Debian's Chromium) against a
// Caddy on example.Caddyfile: two browser contexts chatting over
// EventSource, WebSocket and long-poll; going offline and back; a
// connection cut without an offline event; a message from curl; history
// on joining and the subscriber count; a screenshot (to CHAT_SCREENSHOT
// when set: e2e/chat-screenshot.sh makes docs/chat.png with it); no console
// or page errors anywhere.
func TestChatBrowser(t *testing.T) {
	requireBrowser(t)
	e2e, err := filepath.Abs("e2e")
	if err != nil {
		t.Fatal(err)
	}
	p := runExample(t)
	start := time.Now()
	out, err := runNode(e2e, p.url, "--test", "--test-concurrency=1", "chat/chat-suite.mjs")
	if err != nil {
		t.Fatalf("the chat's browser suite failed after %s: %v\n%s", time.Since(start).Round(time.Second), err, out)
	}
	t.Logf("chat browser suite, %s:\n%s", time.Since(start).Round(time.Second), lastLines(string(out), 10))
}
