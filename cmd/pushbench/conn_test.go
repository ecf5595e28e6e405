package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The raw client must cope with what other servers (e.g. Caddy) may send:
// chunked bodies, Connection: close, 304 without body, keep-alive reuse.
func TestRawClient(t *testing.T) {
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Last-Modified", "Thu, 26 Nov 2026 05:53:20 GMT")
			w.Header().Set("Etag", "3")
			w.Write([]byte("pushbench seq=7 "))
			w.(http.Flusher).Flush()
			w.Write([]byte("t=99 xx"))
		case "/close":
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, "bye")
		case "/304":
			if r.Header.Get("If-None-Match") != "3" || r.Header.Get("If-Modified-Since") == "" {
				w.WriteHeader(400)
				return
			}
			w.WriteHeader(304)
		case "/post":
			b := make([]byte, 100)
			k, _ := r.Body.Read(b)
			w.WriteHeader(202)
			fmt.Fprintf(w, "got %d", k)
		}
	}))
	defer srv.Close()
	f, _ := makeFactory("raw", newDialer(4))
	c := f()
	defer c.close()
	ctx := context.Background()
	st := &subState{}
	r, err := st.poll(ctx, c, srv.URL+"/chunked", nil)
	if err != nil || r.status != 200 || st.etag != "3" || st.lastMod == "" {
		t.Fatalf("chunked: %v %+v %+v", err, r, st)
	}
	if seq, tt, ok := parseBody(r.body); !ok || seq != 7 || tt != 99 {
		t.Fatalf("chunked body %q", r.body)
	}
	if r, err = st.poll(ctx, c, srv.URL+"/304", nil); err != nil || r.status != 304 {
		t.Fatalf("304: %v %d", err, r.status)
	}
	for i := 0; i < 3; i++ {
		if r, err = c.do(ctx, "GET", srv.URL+"/close", nil, nil, nil); err != nil || string(r.body) != "bye" {
			t.Fatalf("close: %v %q", err, r.body)
		}
	}
	if st, err := publishPush(ctx, c, srv.URL+"/post", makeBody(1, 2, 50)); err != nil || st != 202 {
		t.Fatalf("post: %v %d", err, st)
	}
}
