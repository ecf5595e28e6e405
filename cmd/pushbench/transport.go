package main

// Subscriber transports. A subscriber connects to one channel, reports
// when the server will deliver to it (ready) and every message body it
// receives, and returns when its connection ends (an error) or ctx ends.
//
//	-server push        (nchan, caddy-push)
//	  longpoll          GET with the If-Modified-Since/If-None-Match cursor
//	  eventsource       GET, Accept: text/event-stream; resumes with Last-Event-ID
//	  websocket         GET upgrade; with -ws-meta the ws+meta.nchan subprotocol
//	-server centrifugo  (unidirectional transports, anonymous)
//	  eventsource       GET <uni_sse>?cf_connect={"subs":{CH:{}}}
//	  websocket         GET upgrade on <uni_websocket>, then the connect request

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"
)

// subEvents are a subscriber's reports.
type subEvents struct {
	ready func()                         // subscribed (called on every (re)connect)
	msg   func(body []byte, recvT int64) // one message body
}

// subFunc runs one connection of one subscriber.
type subFunc func(ctx context.Context, ch string, ev subEvents) error

// newSubFunc makes subscriber i (whose URL is the i-th of -sub's templates,
// round-robin).
type newSubFunc func(i int) subFunc

// newSubscriber returns a constructor of subscribers for the configured
// server and transport; each subscriber keeps its own state (cursor,
// last event id) across reconnects.
func newSubscriber(cfg *config) (newSubFunc, error) {
	var mk func(*config, string) subFunc
	switch cfg.server + "/" + cfg.transport {
	case "push/longpoll":
		mk = longpollSub
	case "push/eventsource":
		mk = pushSSESub
	case "push/websocket":
		mk = pushWSSub
	case "centrifugo/eventsource":
		mk = centrifugoSSESub
	case "centrifugo/websocket":
		mk = centrifugoWSSub
	}
	if mk != nil {
		tmpls := strings.Split(cfg.sub, ",")
		return func(i int) subFunc { return mk(cfg, tmpls[i%len(tmpls)]) }, nil
	}
	return nil, fmt.Errorf("no %s transport for -server %s", cfg.transport, cfg.server)
}

// longpollSub re-polls until ctx ends; ready when its first request has
// been written.
func longpollSub(cfg *config, tmpl string) subFunc {
	st := &subState{}
	return func(ctx context.Context, ch string, ev subEvents) error {
		c := cfg.factory()
		defer c.close()
		url := chanURL(tmpl, ch)
		first := true
		errs := 0
		for ctx.Err() == nil {
			pr, err := st.poll(ctx, c, url, func() {
				if first {
					first = false
					ev.ready()
				}
			})
			switch {
			case ctx.Err() != nil:
			case err != nil || (pr.status != 200 && !pollRetryable(pr.status)):
				if errs++; errs > 100 {
					return fmt.Errorf("long-poll: %d %v", pr.status, err)
				}
				time.Sleep(20 * time.Millisecond)
			case pr.status == 200:
				ev.msg(pr.body, pr.recvT)
			}
		}
		return nil
	}
}

// sseOpen opens an event stream and checks that it is one.
func sseOpen(ctx context.Context, cfg *config, url string, hdr []string) (*stream, error) {
	s, err := openStream(ctx, cfg.dial, url, append([]string{"Accept", "text/event-stream"}, hdr...))
	if err != nil {
		return nil, err
	}
	if s.head.status != 200 || !strings.HasPrefix(s.head.get("Content-Type"), "text/event-stream") {
		s.close()
		return nil, fmt.Errorf("eventsource: status %d, Content-Type %q", s.head.status, s.head.get("Content-Type"))
	}
	return s, nil
}

// pushSSESub is an EventSource subscriber of the push protocol.
func pushSSESub(cfg *config, tmpl string) subFunc {
	var p sseParser
	return func(ctx context.Context, ch string, ev subEvents) error {
		var hdr []string
		if p.lastID != "" {
			hdr = []string{"Last-Event-ID", p.lastID}
		}
		s, err := sseOpen(ctx, cfg, chanURL(tmpl, ch), hdr)
		if err != nil {
			return err
		}
		defer s.close()
		ev.ready()
		return readSSE(s.body, &p, func(e sseEvent) {
			if !e.keepAlive() {
				ev.msg(e.data, mono())
			}
		})
	}
}

// pushWSSub is a WebSocket subscriber of the push protocol.
func pushWSSub(cfg *config, tmpl string) subFunc {
	return func(ctx context.Context, ch string, ev subEvents) error {
		var protos []string
		if cfg.wsMeta {
			protos = []string{"ws+meta.nchan"}
		}
		ws, s, err := dialWebSocket(ctx, cfg.dial, chanURL(tmpl, ch), protos)
		if err != nil {
			return err
		}
		defer s.close()
		meta := ws.protocol == "ws+meta.nchan"
		if cfg.wsMeta && !meta {
			return fmt.Errorf("websocket: server did not accept ws+meta.nchan")
		}
		ev.ready()
		for {
			_, m, err := ws.readMessage()
			if err == io.EOF && len(m) >= 2 { // the server's close frame: its code and reason say why
				return fmt.Errorf("websocket closed: %d %s", int(m[0])<<8|int(m[1]), bytes.TrimSpace(m[2:]))
			}
			if err != nil {
				return err
			}
			recvT := mono()
			if meta {
				var ok bool
				if _, m, ok = parseNchanMeta(m); !ok {
					return fmt.Errorf("websocket: bad ws+meta.nchan frame %q", truncate(m, 80))
				}
			}
			ev.msg(m, recvT)
		}
	}
}

// centrifugoHandle turns one Centrifugo message into events: ready on the
// connect reply that lists ch, msg for each publication on ch.
func centrifugoHandle(b []byte, ch string, ev subEvents) error {
	var fail error
	err := parseCentrifugoPushes(b, func(k cfKind, p *cfPush) {
		switch k {
		case cfConnected:
			if _, ok := p.Connect.Subs[ch]; ok {
				ev.ready()
			} else {
				fail = fmt.Errorf("centrifugo: connected without a subscription to %q", ch)
			}
		case cfPub:
			if p.Channel != ch {
				return
			}
			if body, ok := centrifugoBody(p.Pub.Data); ok {
				ev.msg(body, mono())
			} else {
				ev.msg(p.Pub.Data, mono()) // counted as a bad body
			}
		case cfDisconnect:
			fail = fmt.Errorf("centrifugo: disconnected: %d %s", p.Disconnect.Code, p.Disconnect.Reason)
		}
	})
	if err != nil {
		return err
	}
	return fail
}

// centrifugoSSESub is a uni_sse subscriber.
func centrifugoSSESub(cfg *config, tmpl string) subFunc {
	return func(ctx context.Context, ch string, ev subEvents) error {
		s, err := sseOpen(ctx, cfg, centrifugoSSEURL(tmpl, ch), nil)
		if err != nil {
			return err
		}
		defer s.close()
		var p sseParser
		var fail error
		err = readSSE(s.body, &p, func(e sseEvent) {
			if fail == nil {
				if fail = centrifugoHandle(e.data, ch, ev); fail != nil {
					s.close()
				}
			}
		})
		if fail != nil {
			return fail
		}
		return err
	}
}

// centrifugoWSSub is a uni_websocket subscriber.
func centrifugoWSSub(cfg *config, tmpl string) subFunc {
	return func(ctx context.Context, ch string, ev subEvents) error {
		ws, s, err := dialWebSocket(ctx, cfg.dial, tmpl, nil)
		if err != nil {
			return err
		}
		defer s.close()
		if err := ws.writeFrame(wsText, centrifugoConnect(ch)); err != nil {
			return err
		}
		for {
			_, m, err := ws.readMessage()
			if err == io.EOF && len(m) >= 2 {
				return fmt.Errorf("centrifugo: websocket closed: %d %s", int(m[0])<<8|int(m[1]), bytes.TrimSpace(m[2:]))
			}
			if err != nil {
				return err
			}
			if err := centrifugoHandle(m, ch, ev); err != nil {
				return err
			}
		}
	}
}
