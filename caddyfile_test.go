package caddypush

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestCaddyfileErrors checks that every bad config line is refused with a
// message that names the problem and the line.
func TestCaddyfileErrors(t *testing.T) {
	tests := []struct{ block, want string }{
		{"push_publisher {\n\tbogus 1\n}", "unrecognized push_publisher subdirective 'bogus', at Caddyfile:3"},
		{"push_subscriber {\n\tbogus 1\n}", "unrecognized push_subscriber subdirective 'bogus', at Caddyfile:3"},
		{"push_subscriber streaming", "unknown push_subscriber mode 'streaming'"},
		{"push_subscriber long-poll extra", "wrong argument count"},
		{"push_publisher extra", "wrong argument count"},
		{"push_publisher {\n\tstore_messages maybe\n}", "invalid value 'maybe' (want on or off), at Caddyfile:3"},
		{"push_publisher {\n\tstore_messages\n}", "wrong argument count or unexpected line ending after 'store_messages', at Caddyfile:3"},
		{"push_publisher {\n\tstore_messages on off\n}", "wrong argument count"},
		{"push_publisher {\n\tmax_message_buffer_length -1\n}", "invalid number '-1'"},
		{"push_publisher {\n\tmax_message_buffer_length ten\n}", "invalid number 'ten'"},
		{"push_publisher {\n\tmax_message_buffer_length 5\n\tmin_message_buffer_length 6\n}", "min_message_buffer_length 6 is greater than max_message_buffer_length 5 (defaults: min 1, max 10), at Caddyfile:4"},
		{"push_publisher {\n\tmin_message_buffer_length 11\n}", "min_message_buffer_length 11 is greater than max_message_buffer_length 10"},
		{"push_publisher {\n\tmessage_timeout soon\n}", "invalid duration 'soon'"},
		{"push_publisher {\n\tmessage_timeout -5s\n}", "invalid duration '-5s'"},
		{"push_publisher {\n\tmax_message_size lots\n}", "invalid size 'lots'"},
		{"push_publisher {\n\tmax_message_size -1M\n}", "invalid size '-1M'"},
		{"push_publisher {\n\tstore_messages on\n\tpush_store_messages off\n}", "store_messages is given more than once, at Caddyfile:4"},
		{"push_publisher {\n\tset $foo bar\n}", "only 'set $push_channel_id <expression>' is supported here"},
		{"push_publisher {\n\tmax_channel_id_length 0\n}", "invalid number '0' (want a whole number of at least 1)"},
		{"push_subscriber {\n\tconcurrency all\n}", "unknown concurrency 'all' (want broadcast, first or last), at Caddyfile:3"},
		{"push_subscriber {\n\tfirst_message middle\n}", "unknown first_message 'middle'"},
		{"push_subscriber {\n\ttimeout forever\n}", "invalid duration 'forever'"},
		{"push_subscriber {\n\tpush_ignore_queue_on_no_cache yes\n}", "invalid value 'yes'"},
		{"push_subscriber {\n\tchannel_group a/b\n}", "channel_group 'a/b' must not contain '/', at Caddyfile:3"},
	}
	for _, tt := range tests {
		cfg := ":8080 {\n" + tt.block + "\n}\n"
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got  %v\n want %q", tt.block, err, tt.want)
		}
	}
	global := []struct{ cfg, want string }{
		{"{\n\tpush {\n\t\tmax_reserved_memory\n\t}\n}\n:8080\n", "wrong argument count"},
		{"{\n\tpush {\n\t\tmax_reserved_memory huge\n\t}\n}\n:8080\n", "invalid size 'huge'"},
		{"{\n\tpush {\n\t\tmax_channels 5\n\t}\n}\n:8080\n", "unrecognized push option 'max_channels', at Caddyfile:3"},
		{"{\n\tpush on\n}\n:8080\n", "wrong argument count"},
		{"{\n\tpush {\n\t\tdisable_metrics yes\n\t}\n}\n:8080\n", "wrong argument count"},
		{"{\n\tpush {\n\t\tstore\n\t}\n}\n:8080\n", "wrong argument count"},
		{"{\n\tpush {\n\t\tstore bogus\n\t}\n}\n:8080\n", "push.stores.bogus"},
		{"{\n\tpush {\n\t\tstore memory extra\n\t}\n}\n:8080\n", "wrong argument count"},
		{"{\n\tpush {\n\t\tstore memory {\n\t\t\tsize 1\n\t\t}\n\t}\n}\n:8080\n", "the memory store takes no options"},
		{redisBlock("bogus 1"), "unknown redis store option 'bogus', at Caddyfile:4"},
		{redisBlock("address"), "wrong argument count or unexpected line ending after 'address', at Caddyfile:4"},
		{redisBlock("db -1"), "invalid number '-1' (want a whole number of at least 0), at Caddyfile:4"},
		{redisBlock("db one"), "invalid number 'one'"},
		{redisBlock("pool_size 1 2"), "wrong argument count"},
		{redisBlock("tls yes"), "wrong argument count"},
		{redisBlock("sentinel"), "wrong argument count"},
		{redisBlock("read_timeout soon"), "invalid duration 'soon'"},
		{redisBlock("key_prefix a\n\t\t\tkey_prefix b"), "duplicate option 'key_prefix', at Caddyfile:5"},
	}
	for _, tt := range global {
		_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tt.cfg), nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q:\n got  %v\n want %q", tt.cfg, err, tt.want)
		}
	}
}

// redisBlock is a global push option with a redis store block holding line
// (at line 4).
func redisBlock(line string) string {
	return "{\n\tpush {\n\t\tstore redis {\n\t\t\t" + line + "\n\t\t}\n\t}\n}\n:8080\n"
}

func TestParseSizeAndDuration(t *testing.T) {
	sizes := map[string]int64{
		"10M": 10 << 20, "512k": 512 << 10, "1g": 1 << 30, "100": 100, "0": 0,
		"10MiB": 10 << 20, "10MB": 10_000_000, "1.5KiB": 1536,
	}
	for in, want := range sizes {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "M", "-1", "-1M", "ten", "99999999999999999999G", "+5"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
	durs := map[string]time.Duration{"2h": 2 * time.Hour, "90s": 90 * time.Second, "1d": 24 * time.Hour, "30": 30 * time.Second, "0": 0}
	for in, want := range durs {
		if got, err := parseDuration(in); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "-1s", "-3", "99999999999999999999"} {
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
		{"bad mode", &Subscriber{Mode: "stream", FirstMessage: "oldest"}},
		{"bad first_message", &Subscriber{Mode: ModeLongPoll, FirstMessage: "x"}},
		{"negative subscribers", &Subscriber{Mode: ModeLongPoll, FirstMessage: "oldest", MaxChannelSubscribers: -1}},
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
			p.opts = PublishOptions{
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
	f.Add("set $push_channel_id $arg_id\nclient_max_body_size 1M")
	f.Add("concurrency last\ntimeout 1d\nfirst_message newest")
	f.Add("message_buffer_length 3\n}\n{")
	f.Add("max_message_size 9999999999999G")
	f.Add("store redis 127.0.0.1:6379 {\naddress redis://u:p@h:1/2 rediss://h2\nsentinel m\ndb 2\ntls\nkey_prefix k:\n}")
	f.Add("store redis {\nread_timeout 1s\npool_size 3\ntls_ca /x.pem\n}\nmax_reserved_memory 1M")
	f.Fuzz(func(t *testing.T, block string) {
		for _, dir := range []string{"push_publisher", "push_subscriber", "push_subscriber interval-poll"} {
			cfg := ":8080 {\n" + dir + " {\n" + block + "\n}\n}\n"
			_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
		}
		_, _, _ = caddyconfig.GetAdapter("caddyfile").Adapt([]byte("{\npush {\n"+block+"\n}\n}\n:8080\n"), nil)
	})
}
