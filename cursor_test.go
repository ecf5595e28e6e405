package caddypush

import (
	"net/url"
	"strings"
	"testing"

	"github.com/caddypush/caddy-push/pushstore"
)

func TestParseCursor(t *testing.T) {
	tests := []struct {
		ims, inm string
		want     pushstore.MessageID
	}{
		{"", "", pushstore.MessageID{}},
		{"Thu, 26 Nov 2026 06:06:17 GMT", "3", pushstore.MessageID{Time: 1795673177, Tag: 3}},
		{"garbage", `"7"`, pushstore.MessageID{Time: 0, Tag: 7}},
		{"", `W/"12"`, pushstore.MessageID{Time: 0, Tag: 12}},
		{"", `5-gzip"`, pushstore.MessageID{Time: 0, Tag: 5}},
		{"", `5"`, pushstore.MessageID{Time: 0, Tag: 5}},
		{"", `"5-zstd"`, pushstore.MessageID{Time: 0, Tag: 5}},
		{"", "abc", pushstore.MessageID{}},
		{"", "5x", pushstore.MessageID{}},
		{"", "-5", pushstore.MessageID{}},
		{"", "99999999999999999999", pushstore.MessageID{}},
		{"", `"5", "6"`, pushstore.MessageID{}},
	}
	for _, tt := range tests {
		if got := ParseCursor(tt.ims, tt.inm); got != tt.want {
			t.Errorf("ParseCursor(%q, %q) = %v, want %v", tt.ims, tt.inm, got, tt.want)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	f.Add("Thu, 26 Nov 2026 06:06:17 GMT", "3")
	f.Add("", `W/"1"`)
	f.Add("Monday, 02-Jan-06 15:04:05 MST", `7-gzip"`)
	f.Fuzz(func(t *testing.T, ims, inm string) {
		id := ParseCursor(ims, inm)
		if id.Tag < 0 {
			t.Fatalf("negative tag %d", id.Tag)
		}
		// Whatever we emit must read back as itself.
		back := ParseCursor(lastModified(id), etag(id))
		if id.Time >= 0 && id.Time < 253402300800 && back != id {
			t.Fatalf("round trip %v -> %v", id, back)
		}
	})
}

func FuzzNegotiateInfo(f *testing.F) {
	f.Add("text/html, application/xml;q=0.9, */*;q=0.8")
	f.Add("TEXT/JSON ; charset=x,")
	f.Add(",,;;")
	f.Fuzz(func(t *testing.T, accept string) {
		format, media := negotiateInfo(accept)
		if got, ok := infoFormats[media]; !ok || got != format {
			t.Fatalf("negotiateInfo(%q) = %v %q: not a known pair", accept, format, media)
		}
		if len(appendInfo(nil, format, pushstore.ChannelInfo{Messages: 1, Requested: -1})) == 0 {
			t.Fatal("empty info body")
		}
	})
}

// FuzzQueryParam checks the channel id fast path against url.Query, the
// oracle Caddy's {http.request.uri.query.*} placeholder uses.
func FuzzQueryParam(f *testing.F) {
	for _, q := range []string{"id=a", "id=a&id=b", "x=1&id=%41", "id=a;b&id=c", "i%64=z", "id=%zz&id=ok", "id", "&&id=&", "id=a+b"} {
		f.Add(q, "id")
	}
	f.Fuzz(func(t *testing.T, raw, key string) {
		want := strings.Join((&url.URL{RawQuery: raw}).Query()[key], ",")
		if got := queryParam(raw, key); got != want {
			t.Fatalf("queryParam(%q, %q) = %q, url.Query gives %q", raw, key, got, want)
		}
	})
}
