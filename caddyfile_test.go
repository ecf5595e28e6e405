package caddypush

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
)

// TestCaddyfileAdaptToJSON compares each testdata/caddyfile_adapt file's
// Caddyfile half, adapted, with its JSON half. UPDATE_GOLDEN=1 rewrites the
// JSON halves.
func TestCaddyfileAdaptToJSON(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, _ := strings.Cut(string(data), "----------")
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(f, []byte(caddyfile+"----------\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !caddytest.CompareAdapt(t, f, caddyfile, "caddyfile", strings.TrimSpace(expected)) {
				t.Fail()
			}
		})
	}
}

// TestCaddyfileErrors adapts the Caddyfile half of each
// testdata/caddyfile_errors file and expects exactly the error of its other
// half: every bad line is refused with a message that names the problem
// and the line. UPDATE_GOLDEN=1 rewrites the error halves.
func TestCaddyfileErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_errors/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, want, _ := strings.Cut(string(data), "----------\n")
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("adapted without an error:\n%s", caddyfile)
			}
			if os.Getenv("UPDATE_GOLDEN") == "1" {
				if err := os.WriteFile(f, []byte(caddyfile+"----------\n"+err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got := err.Error(); got != strings.TrimSpace(want) {
				t.Fatalf("error:\n got  %s\n want %s", got, strings.TrimSpace(want))
			}
		})
	}
}

func TestParseSizeAndDuration(t *testing.T) {
	sizes := map[string]int64{
		"10M": 10 << 20, "512k": 512 << 10, "1.5M": 3 << 19, "0.5k": 512, "1g": 1 << 30, "100": 100, "0": 0,
		"10MiB": 10 << 20, "10MB": 10_000_000, "1.5KiB": 1536,
	}
	for in, want := range sizes {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "-1M", "ten", "99999999999999999999G", "+5", "NaNM", "InfK", "-0.5M", "+1.5M",
		"0.1k", "0.3m", "1.0001KB", "1.5B"} { // a fraction of a byte
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	durs := map[string]time.Duration{"2h": 2 * time.Hour, "90s": 90 * time.Second, "1d": 24 * time.Hour, "30": 30 * time.Second, "0": 0,
		"1h30m": 90 * time.Minute, "500ms": 500 * time.Millisecond,
		// nginx's units beyond Caddy's: w, M (30 days), y (365 days)
		"1w": 7 * 24 * time.Hour, "2M": 60 * 24 * time.Hour, "1y": 365 * 24 * time.Hour, "1w2d": 9 * 24 * time.Hour, "1M1m": 30*24*time.Hour + time.Minute}
	for in, want := range durs {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "-1s", "-3", "99999999999999999999", "1W", "1.5w", "w", "1w-2d", "99999999999y"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) accepted", bad)
		}
	}
}

// TestValidateRefusesBadJSON covers limits that JSON config can express
// but the Caddyfile parser would have refused.
func TestValidateRefusesBadJSON(t *testing.T) {
	two, one := 2, 1
	neg := -1
	tests := []struct {
		name string
		v    interface{ Validate() error }
	}{
		{"min > max", &Publisher{MinMessageBufferLength: &two, MaxMessageBufferLength: &one}},
		{"negative max", &Publisher{MaxMessageBufferLength: &neg}},
		{"negative size", &Publisher{MaxMessageSize: -1}},
		{"size past 4 EiB", &Publisher{MaxMessageSize: 1<<63 - 1}}, // a body of unknown length panicked
		{"bad publisher transport", &Publisher{Transports: []string{"eventsource"}}},
		{"pub/sub publisher transports", &Subscriber{Mode: ModeLongPoll, FirstMessage: "oldest",
			Publish: &Publisher{Transports: []string{"http"}}}},
		{"bad mode", &Subscriber{Mode: "stream", FirstMessage: "oldest"}},
		{"bad first_message", &Subscriber{Mode: ModeLongPoll, FirstMessage: "x"}},
		{"negative subscribers", &Subscriber{Mode: ModeLongPoll, FirstMessage: "oldest", MaxChannelSubscribers: -1}},
		{"bad longpoll_multipart_response", &Subscriber{Mode: ModeLongPoll, FirstMessage: "oldest", LongPollMultipart: "yes"}},
		{"negative memory", &App{MaxReservedMemory: -1}},
		{"redis URL scheme", &RedisBackend{Addresses: []string{"http://127.0.0.1:6379"}}},
		{"redis URL database", &RedisBackend{Addresses: []string{"redis://127.0.0.1:6379/x"}}},
		{"redis URL without host", &RedisBackend{Addresses: []string{"redis:///0"}}},
		{"redis prefix with a hash tag", &RedisBackend{Addresses: []string{"a:1"}, KeyPrefix: "{x}"}},
		{"redis negative db", &RedisBackend{Addresses: []string{"a:1"}, DB: -1}},
		{"redis negative timeout", &RedisBackend{Addresses: []string{"a:1"}, ReadTimeout: -1}},
	}
	for _, tt := range tests {
		if p, ok := tt.v.(*Publisher); ok {
			p.opts = pushstore.PublishOptions{
				MaxBufferLength: intOr(p.MaxMessageBufferLength, DefaultMaxMessageBufferLength),
				MinBufferLength: intOr(p.MinMessageBufferLength, DefaultMinMessageBufferLength),
			}
		}
		if err := tt.v.Validate(); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

// FuzzCaddyfile feeds arbitrary subdirective blocks to both handlers'
// parsers: they may refuse, but never panic.
func FuzzCaddyfile(f *testing.F) {
	f.Add("store_messages on\nmax_message_buffer_length 5")
	f.Add("allow_origin https://a.example\nnchan_access_control_allow_credentials on;")
	f.Add("set $push_channel_id $arg_id\nclient_max_body_size 1M")
	f.Add("concurrency last\ntimeout 1d\nfirst_message newest")
	f.Add("message_buffer_length 3\n}\n{")
	f.Add("max_message_size 9999999999999G")
	f.Add("store redis 127.0.0.1:6379 {\naddress redis://u:p@h:1/2 rediss://h2\nsentinel m\ndb 2\ntls\nkey_prefix k:\n}")
	f.Add("store redis {\nread_timeout 1s\npool_size 3\ntls_ca /x.pem\n}\nmax_reserved_memory 1M")
	f.Add("channel_id {query.a} {query.b}\nchannel_id_split_delimiter ,\nfirst_message -20")
	f.Add("transports eventsource websocket\neventsource_ping_interval 10s\nwebsocket_ping_interval 0")
	f.Add("nchan_subscriber_first_message 3;\nnchan_subscriber_http_raw_stream_separator \"\\n\"\nstream_queue_size 64k")
	f.Fuzz(func(t *testing.T, block string) {
		for _, dir := range []string{"push_publisher", "push_subscriber", "push_subscriber interval-poll", "push_pubsub", "nchan_pubsub websocket eventsource"} {
			cfg := ":8080 {\n" + dir + " {\n" + block + "\n}\n}\n"
			_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		}
		_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\npush {\n"+block+"\n}\n}\n:8080\n"), nil)
	})
}

// TestNginxSemicolons pastes nginx lines with their `;` into a Caddyfile:
// each must adapt exactly as the line without it, for every kind of value
// (placeholder, size, duration, on/off, number, a word, a flag), and a
// quoted `;` stays part of its value.
func TestNginxSemicolons(t *testing.T) {
	adapt := func(cfg string) string {
		t.Helper()
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, cfg)
		}
		return string(out)
	}
	site := func(pub, sub string) string {
		return ":8080 {\n\tpush_publisher /pub {\n\t\t" + pub + "\n\t}\n\tpush_subscriber /sub {\n\t\t" + sub + "\n\t}\n}\n"
	}
	lines := []struct{ pub, sub string }{
		{"set $push_channel_id $arg_id;", "set $push_channel_id $arg_id;"}, // placeholder
		{"client_max_body_size 1m;", "push_subscriber_timeout 30;"},        // size; duration in seconds
		{"push_message_timeout 2h;", "push_subscriber_concurrency last;"},  // duration; word
		{"push_store_messages off;", "push_authorized_channels_only on;"},  // on/off
		{"push_max_message_buffer_length 12;", "push_max_channel_subscribers 3;"},
		{"push_store_messages off ;", "push_ignore_queue_on_no_cache on ;"}, // a `;` on its own
		{"push_channel_group room;", "push_channel_group room;"},
	}
	for _, l := range lines {
		with := adapt(site(l.pub, l.sub))
		without := adapt(site(strings.TrimSuffix(strings.TrimSuffix(l.pub, ";"), " "),
			strings.TrimSuffix(strings.TrimSuffix(l.sub, ";"), " ")))
		if with != without {
			t.Errorf("%q / %q adapt differently with their ';':\n with    %s\n without %s", l.pub, l.sub, with, without)
		}
	}
	global := func(opt string) string { return "{\n\tpush {\n\t\t" + opt + "\n\t}\n}\n:8080\n" }
	for _, opt := range []string{"push_max_reserved_memory 10M;", "disable_metrics;", "store memory;"} {
		if with, without := adapt(global(opt)), adapt(global(strings.TrimSuffix(opt, ";"))); with != without {
			t.Errorf("%q adapts differently with its ';':\n with    %s\n without %s", opt, with, without)
		}
	}
	if got := adapt(site(`allow_origin "https://a.example;"`, "")); !strings.Contains(got, `"allow_origin":"https://a.example;"`) {
		t.Errorf("a quoted ';' was dropped: %s", got)
	}
}

// TestNginxVariables: nginx variables in a channel_id become placeholders
// wherever they stand; a $ before a digit stays text; any other variable
// is refused.
func TestNginxVariables(t *testing.T) {
	for in, want := range map[string]string{
		"$arg_id":                    "{http.request.uri.query.id}",
		"room_$arg_id":               "room_{http.request.uri.query.id}",
		"${arg_a}:${cookie_b}":       "{http.request.uri.query.a}:{http.request.cookie.b}",
		"$http_x_room.json":          "{http.request.header.x-room}.json",
		"price$5 and $ alone and $$": "price$5 and $ alone and $$",
		"{query.id}":                 "{query.id}",
	} {
		if got, err := nginxVariables(in); err != nil || got != want {
			t.Errorf("nginxVariables(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"$uri", "chat_$host", "${request_id}", "$arg_"} {
		if got, err := nginxVariables(bad); err == nil {
			t.Errorf("nginxVariables(%q) = %q, accepted", bad, got)
		}
	}
}

// TestConfigurationDocShowsTheTransportsCaddyfile: configuration.md's
// working example says it is transports.caddyfiletest's Caddyfile, which
// the tests adapt and load: it must stay that file's text.
func TestConfigurationDocShowsTheTransportsCaddyfile(t *testing.T) {
	doc, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/caddyfile_adapt/transports.caddyfiletest")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := strings.Cut(string(golden), "----------\n")
	_, example, _ := strings.Cut(string(doc), "## A working example")
	_, block, _ := strings.Cut(example, "```caddyfile\n")
	block, _, _ = strings.Cut(block, "```")
	if block != want {
		t.Fatalf("configuration.md's working example is not transports.caddyfiletest's Caddyfile:\n%s", block)
	}
}
