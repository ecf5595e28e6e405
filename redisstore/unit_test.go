package redisstore

import (
	"strings"
	"testing"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// Unit tests of the Redis store's plain-Go parts: cursor scores,
// notifications, stored options and client options.

func TestCursorScore(t *testing.T) {
	tests := []struct {
		has    bool
		cursor pushstore.MessageID
		start  pushstore.Start
		want   string
	}{
		{false, pushstore.MessageID{}, pushstore.Start{}, "-1"},
		{false, pushstore.MessageID{}, pushstore.Start{Newest: true}, "newest"},
		{false, pushstore.MessageID{}, pushstore.Start{At: 1}, "-1"},
		{false, pushstore.MessageID{}, pushstore.Start{At: 3}, "at:2"},
		{false, pushstore.MessageID{}, pushstore.Start{At: -2}, "at:-2"},
		{true, pushstore.MessageID{}, pushstore.Start{Newest: true}, "0"},
		{true, pushstore.MessageID{Time: 10, Tag: 3}, pushstore.Start{}, "10485763"},
		{true, pushstore.MessageID{Time: -5, Tag: 3}, pushstore.Start{}, "-1"},
		{true, pushstore.MessageID{Time: 1, Tag: -7}, pushstore.Start{}, "1048576"},
		{true, pushstore.MessageID{Time: 1, Tag: 1 << 40}, pushstore.Start{}, "2097151"},
		{true, pushstore.MessageID{Time: 1 << 60}, pushstore.Start{}, "4503599628419071"},
	}
	for _, tt := range tests {
		if got := cursorScore(tt.has, tt.cursor, tt.start); got != tt.want {
			t.Errorf("cursorScore(%v, %+v, %+v) = %s, want %s", tt.has, tt.cursor, tt.start, got, tt.want)
		}
	}
}

func TestParseNote(t *testing.T) {
	key := "g/a b\nc"
	n, ok := parseNote("m42 1795684119:3 " + keyHeader(key) + "0001795684119000\ntext/plain\nev\nbody\nwith lines")
	if !ok || n.kind != 'm' || n.gen != 42 || n.key != key || n.id != "1795684119:3" || n.payload != "0001795684119000\ntext/plain\nev\nbody\nwith lines" {
		t.Fatalf("message note: %+v %v", n, ok)
	}
	m, _ := newMessage(parseID(n.id), n.payload)
	if m.ID != (pushstore.MessageID{Time: 1795684119, Tag: 3}) || m.ContentType != "text/plain" || m.Event != "ev" ||
		string(m.Body) != "body\nwith lines" {
		t.Fatalf("message: %+v", m)
	}
	for _, kind := range "dx" {
		n, ok := parseNote(string(kind) + "7 " + keyHeader(key))
		if !ok || n.kind != byte(kind) || n.gen != 7 || n.key != key || n.id != "" || n.payload != "" {
			t.Fatalf("%c note: %+v %v", kind, n, ok)
		}
	}
	for _, bad := range []string{"", "m", "q1 1 a", "d1 5 abc", "dx 1 a", "d1 -1 a", "m1 2:3 x a"} {
		if n, ok := parseNote(bad); ok {
			t.Errorf("parseNote(%q) accepted: %+v", bad, n)
		}
	}
}

func FuzzParseNote(f *testing.F) {
	f.Add("m42 1:3 3 /abtext/plain\nbody")
	f.Add("d7 2 /a")
	f.Add("x1 0 ")
	f.Fuzz(func(t *testing.T, p string) {
		n, ok := parseNote(p)
		if !ok {
			return
		}
		if !strings.Contains(p, n.key) || (n.kind != 'm' && n.kind != 'd' && n.kind != 'x') {
			t.Fatalf("parseNote(%q) = %+v", p, n)
		}
	})
}

func TestPublishOptionsRoundTrip(t *testing.T) {
	o := pushstore.PublishOptions{StoreMessages: true, MaxBufferLength: 7, MinBufferLength: 2, MinRecipients: 3,
		DeleteOldestReceived: true, MessageTimeout: 90 * time.Second, ChannelTimeout: time.Hour}
	if got := decodeOptions(encodeOptions(o), pushstore.PublishOptions{}); got != o {
		t.Fatalf("round trip: %+v, want %+v", got, o)
	}
	def := pub()
	if got := decodeOptions("", def); got != def {
		t.Fatalf("empty options: %+v", got)
	}
}

func TestClientOptions(t *testing.T) {
	o, err := Options{Addresses: []string{"redis://u:p%40ss@h1/2", "rediss://h2:7000"}}.universal()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Addrs, ",") != "h1:6379,h2:7000" || o.Username != "u" || o.Password != "p@ss" || o.DB != 2 || o.TLSConfig == nil {
		t.Fatalf("options from URLs: %+v", o)
	}
	o, _ = Options{Addresses: []string{"s1:26379"}, Sentinel: "mymaster", Password: "pw", SentinelPassword: "spw"}.universal()
	if o.MasterName != "mymaster" || o.Password != "pw" || o.SentinelPassword != "spw" || o.TLSConfig != nil {
		t.Fatalf("sentinel options: %+v", o)
	}
	for _, bad := range []string{"http://h", "redis://", "redis://h/x"} {
		if err := (Options{Addresses: []string{bad}}).Check(); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
}

// TestStoredForms reads today's stored form and the one before streams
// ("<content type>\n<body>"), which Redis may still hold after an upgrade.
func TestStoredForms(t *testing.T) {
	id := pushstore.MessageID{Time: 5, Tag: 1}
	for _, c := range []struct {
		stored, ct, event, body string
		seq                     uint64
	}{
		{"1795803532000001\ntext/plain\nping\nhello\nworld", "text/plain", "ping", "hello\nworld", 1795803532000001},
		{"1795803532000001\n\n\n", "", "", "", 1795803532000001},
		{"text/plain\nhello\nworld", "text/plain", "", "hello\nworld", 0},
		{"\nbody", "", "", "body", 0},
		{"1234\nbody", "1234", "", "body", 0},
	} {
		m, seq := newMessage(id, c.stored)
		if m.ContentType != c.ct || m.Event != c.event || string(m.Body) != c.body || seq != c.seq || m.ID != id {
			t.Errorf("%q: %q %q %q %d", c.stored, m.ContentType, m.Event, m.Body, seq)
		}
	}
}
