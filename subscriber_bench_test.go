package caddypush

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddypush/caddy-push/pushstore"

	"github.com/caddyserver/caddy/v2"
)

// discardWriter is a ResponseWriter that keeps headers and drops the body.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkWriteMessage is the per-delivery work of a subscriber response.
func BenchmarkWriteMessage(b *testing.B) {
	s := &Subscriber{ChannelConfig: ChannelConfig{AllowOrigin: "*"}}
	m := &pushstore.Message{ID: pushstore.MessageID{Time: 1_795_673_177, Tag: 3}, Body: make([]byte, 100), ContentType: "text/plain"}
	r := httptest.NewRequest("GET", "/sub?id=x", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		s.writeMessage(w, r, m)
	}
}
