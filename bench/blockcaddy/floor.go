package main

import (
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Floor is the least a Caddy handler must do to pass pushbench's fan-out
// and stream scenarios: one in-memory log per channel, POST appends and
// wakes every parked GET, GET answers the first message after its
// If-Modified-Since/If-None-Match cursor or parks until there is one. No
// limits, no expiry, no stats, no channel info: it is the floor under
// caddy-push's CPU per delivery, measured by bench/floor.sh in the same run.
type Floor struct{}

// floorChannel is one channel's log and its wake-up broadcast.
type floorChannel struct {
	msgs []floorMessage
	wake chan struct{} // closed and replaced by every publish
}

type floorMessage struct {
	sec  int64 // Last-Modified, in Unix seconds
	tag  int   // Etag: 0, 1, 2... among messages of the same second
	body []byte
}

var floor = struct {
	sync.Mutex
	chans map[string]*floorChannel
}{chans: map[string]*floorChannel{}}

// channel returns the channel id, creating it.
func floorChan(id string) *floorChannel {
	ch := floor.chans[id]
	if ch == nil {
		ch = &floorChannel{wake: make(chan struct{})}
		floor.chans[id] = ch
	}
	return ch
}

// CaddyModule returns the Caddy module information.
func (Floor) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.bench_floor", New: func() caddy.Module { return new(Floor) }}
}

// ServeHTTP publishes (POST) or long-polls (GET) the channel ?id=.
func (Floor) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	id := r.URL.Query().Get("id")
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return caddyhttp.Error(http.StatusBadRequest, err)
		}
		floor.Lock()
		ch := floorChan(id)
		m := floorMessage{sec: time.Now().Unix(), body: body}
		if n := len(ch.msgs); n > 0 && ch.msgs[n-1].sec == m.sec {
			m.tag = ch.msgs[n-1].tag + 1
		}
		ch.msgs = append(ch.msgs, m)
		close(ch.wake)
		ch.wake = make(chan struct{})
		n := len(ch.msgs)
		floor.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, err = io.WriteString(w, "queued messages: "+strconv.Itoa(n)+"\r\n")
		return err
	}
	var sec int64
	tag := -1
	if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil {
		sec = t.Unix()
		if v, err := strconv.Atoi(r.Header.Get("If-None-Match")); err == nil {
			tag = v
		}
	}
	for {
		floor.Lock()
		ch := floorChan(id)
		if i := sort.Search(len(ch.msgs), func(i int) bool {
			m := ch.msgs[i]
			return m.sec > sec || (m.sec == sec && m.tag > tag)
		}); i < len(ch.msgs) {
			m := ch.msgs[i]
			floor.Unlock()
			h := w.Header()
			h["Last-Modified"] = []string{time.Unix(m.sec, 0).UTC().Format(http.TimeFormat)}
			h["Etag"] = []string{strconv.Itoa(m.tag)}
			h["Content-Type"] = []string{"text/plain"}
			_, err := w.Write(m.body)
			return err
		}
		wake := ch.wake
		floor.Unlock()
		select {
		case <-wake:
		case <-r.Context().Done():
			return nil
		}
	}
}

func init() {
	caddy.RegisterModule(Floor{})
	httpcaddyfile.RegisterHandlerDirective("bench_floor", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return Floor{}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("bench_floor", httpcaddyfile.Before, "respond")
}

var _ caddyhttp.MiddlewareHandler = Floor{}
