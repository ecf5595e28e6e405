package caddypush

import (
	"strings"
	"testing"
	"time"
)

// Unit tests of the Redis store's plain-Go parts: cursor scores,
// notifications, stored options and client options.

func TestCursorScore(t *testing.T) {
	tests := []struct {
		req  SubscribeRequest
		want string
	}{
		{SubscribeRequest{}, "-1"},
		{SubscribeRequest{StartNewest: true}, "newest"},
		{SubscribeRequest{HasCursor: true, StartNewest: true}, "0"},
		{SubscribeRequest{HasCursor: true, Cursor: MessageID{Time: 10, Tag: 3}}, "10485763"},
		{SubscribeRequest{HasCursor: true, Cursor: MessageID{Time: -5, Tag: 3}}, "-1"},
		{SubscribeRequest{HasCursor: true, Cursor: MessageID{Time: 1, Tag: -7}}, "1048576"},
		{SubscribeRequest{HasCursor: true, Cursor: MessageID{Time: 1, Tag: 1 << 40}}, "2097151"},
		{SubscribeRequest{HasCursor: true, Cursor: MessageID{Time: 1 << 60}}, "4503599628419071"},
	}
	for _, tt := range tests {
		if got := cursorScore(tt.req); got != tt.want {
			t.Errorf("cursorScore(%+v) = %s, want %s", tt.req, got, tt.want)
		}
	}
}

func TestParseNote(t *testing.T) {
	key := "g/a b\nc"
	n, ok := parseNote("m42 1795684119:3 " + keyHeader(key) + "text/plain\nbody\nwith lines")
	if !ok || n.kind != 'm' || n.gen != 42 || n.key != key || n.id != "1795684119:3" || n.payload != "text/plain\nbody\nwith lines" {
		t.Fatalf("message note: %+v %v", n, ok)
	}
	m := newMessage(parseID(n.id), n.payload)
	if m.ID != (MessageID{Time: 1795684119, Tag: 3}) || m.ContentType != "text/plain" || string(m.Body) != "body\nwith lines" {
		t.Fatalf("message: %+v", m)
	}
	for _, kind := range "dx" {
		n, ok := parseNote(string(kind) + "7 " + keyHeader(key))
		if !ok || n.kind != byte(kind) || n.gen != 7 || n.key != key || n.wake().Reason == WakeMessage {
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
	o := PublishOptions{StoreMessages: true, MaxBufferLength: 7, MinBufferLength: 2, MinRecipients: 3,
		DeleteOldestReceived: true, MessageTimeout: 90 * time.Second, ChannelTimeout: time.Hour}
	if got := decodeOptions(encodeOptions(o), PublishOptions{}); got != o {
		t.Fatalf("round trip: %+v, want %+v", got, o)
	}
	def := defaultPublishOptions()
	if got := decodeOptions("", def); got != def {
		t.Fatalf("empty options: %+v", got)
	}
}

func TestRedisClientOptions(t *testing.T) {
	b := &RedisBackend{Addresses: []string{"redis://u:p%40ss@h1/2", "rediss://h2:7000"}}
	o, err := b.options()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(o.Addrs, ",") != "h1:6379,h2:7000" || o.Username != "u" || o.Password != "p@ss" || o.DB != 2 || o.TLSConfig == nil {
		t.Fatalf("options from URLs: %+v", o)
	}
	b = &RedisBackend{Addresses: []string{"s1:26379"}, Sentinel: "mymaster", Password: "pw", SentinelPassword: "spw"}
	if o, _ = b.options(); o.MasterName != "mymaster" || o.Password != "pw" || o.SentinelPassword != "spw" || o.TLSConfig != nil {
		t.Fatalf("sentinel options: %+v", o)
	}
	k1 := (&RedisBackend{Addresses: []string{"a:1"}, Password: "secret"}).PoolKey()
	k2 := (&RedisBackend{Addresses: []string{"a:1"}, Password: "other"}).PoolKey()
	if strings.Contains(k1, "secret") || k1 == k2 {
		t.Fatalf("pool keys %q and %q", k1, k2)
	}
}
