package caddypush

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddypush/caddy-push/pushstore"
)

func init() {
	caddy.RegisterModule(Subscriber{})
}

// Subscriber modes: long-poll waits for a message, interval-poll never waits.
const (
	ModeLongPoll     = "long-poll"
	ModeIntervalPoll = "interval-poll"
)

// Subscriber is the push_subscriber handler: a GET returns the first message
// of its channel newer than the message identified by the request's
// If-Modified-Since and If-None-Match, with the Last-Modified and Etag that
// identify it. With long-poll, a request that finds nothing waits until a
// message is published (200), the channel is deleted (410), it is displaced
// by `last` concurrency (409) or its timeout passes (304). It sets the
// placeholders {http.push.channel_id} and {http.push.message_id} (the id
// of the message sent, "time:tag").
type Subscriber struct {
	ChannelConfig

	// Mode is `long-poll` (wait for the next message) or `interval-poll`
	// (answer 304 at once when there is nothing new). Equivalent to the
	// argument of nginx push_subscriber. Default: long-poll.
	Mode string `json:"mode,omitempty"`

	// Concurrency decides what happens when a channel already has waiting
	// subscribers: `broadcast` lets any number wait, `first` refuses the
	// new request with 409, `last` answers every current waiter with 409.
	// Equivalent to nginx push_subscriber_concurrency. Default: broadcast.
	Concurrency string `json:"concurrency,omitempty"`

	// Timeout is how long a long-poll waits before it is answered with 304;
	// zero waits until a message comes. Equivalent to nginx
	// push_subscriber_timeout. Default: 0.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// AuthorizedChannelsOnly forbids subscribers to create channels: a
	// request for a channel that does not exist gets 403. Equivalent to
	// nginx push_authorized_channels_only. Default: false.
	AuthorizedChannelsOnly bool `json:"authorized_channels_only,omitempty"`

	// MaxChannelSubscribers is how many long-polls may wait on one channel;
	// the next gets 403. Zero is unlimited. Equivalent to nginx
	// push_max_channel_subscribers. Default: 0.
	MaxChannelSubscribers int `json:"max_channel_subscribers,omitempty"`

	// FirstMessage is where a request without If-Modified-Since and
	// If-None-Match starts: `oldest` gets the oldest stored message at
	// once, `newest` waits for the next publication. Equivalent to nginx
	// push_ignore_queue_on_no_cache (on = newest). Default: oldest.
	FirstMessage string `json:"first_message,omitempty"`

	store       pushstore.Store
	concurrency pushstore.Concurrency
	logger      *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Subscriber) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.push_subscriber",
		New: func() caddy.Module { return new(Subscriber) },
	}
}

// Provision sets defaults and finds the push app's store.
func (s *Subscriber) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	s.setDefaults()
	if s.Mode == "" {
		s.Mode = ModeLongPoll
	}
	if s.FirstMessage == "" {
		s.FirstMessage = "oldest"
	}
	c, ok := concurrencies[s.Concurrency]
	if !ok {
		return fmt.Errorf("unknown concurrency %q (want broadcast, first or last)", s.Concurrency)
	}
	s.concurrency = c
	store, err := pushStore(ctx)
	if err != nil {
		return err
	}
	s.store = store
	return nil
}

var concurrencies = map[string]pushstore.Concurrency{"": pushstore.Broadcast, "broadcast": pushstore.Broadcast,
	"first": pushstore.First, "last": pushstore.Last}

// Validate checks the configuration.
func (s *Subscriber) Validate() error {
	if err := s.validate(); err != nil {
		return err
	}
	switch {
	case s.Mode != ModeLongPoll && s.Mode != ModeIntervalPoll:
		return fmt.Errorf("unknown mode %q (want long-poll or interval-poll)", s.Mode)
	case s.FirstMessage != "oldest" && s.FirstMessage != "newest":
		return fmt.Errorf("unknown first_message %q (want oldest or newest)", s.FirstMessage)
	case s.Timeout < 0:
		return fmt.Errorf("timeout must not be negative")
	case s.MaxChannelSubscribers < 0:
		return fmt.Errorf("max_channel_subscribers must not be negative")
	}
	return nil
}

const subscriberMethods = "GET, OPTIONS"

// ServeHTTP answers a subscriber request (docs/protocol.md, "Subscriber").
func (s *Subscriber) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		s.writeCORS(w, "If-None-Match, If-Modified-Since, Origin", subscriberMethods)
		return nil
	default:
		w.Header().Set("Allow", subscriberMethods)
		writeEmpty(w, http.StatusMethodNotAllowed)
		return nil
	}
	// No cache may store or replay an answer: each depends on the request's
	// cursor and on what was published since.
	w.Header()["Cache-Control"] = []string{"no-store"}
	_, key, ok := s.channelKey(w, r)
	if !ok {
		return nil
	}
	ims, inm := r.Header.Get("If-Modified-Since"), r.Header.Get("If-None-Match")
	res, err := s.store.Subscribe(key, pushstore.SubscribeRequest{
		Cursor:      ParseCursor(ims, inm),
		HasCursor:   ims != "" || inm != "",
		StartNewest: s.FirstMessage == "newest",
		Create:      !s.AuthorizedChannelsOnly,
		Wait:        s.Mode == ModeLongPoll,
		Concurrency: s.concurrency,
		MaxWaiters:  s.MaxChannelSubscribers,
	})
	switch {
	case err != nil:
		return storeRefusal(w, err)
	case res.Message != nil:
		s.writeMessage(w, r, res.Message)
	case res.Sub != nil:
		s.wait(w, r, key, res.Sub)
	default: // interval-poll, nothing new: echo the cursor
		h := w.Header()
		if ims != "" {
			h.Set("Last-Modified", ims)
		}
		if inm != "" {
			h.Set("Etag", inm)
		}
		w.WriteHeader(http.StatusNotModified)
	}
	return nil
}

// wait parks the request until its subscription is sent something, the
// timeout passes or the client goes away.
//
// Keep the path to the park shallow: Caddy's handler chain leaves only a
// few hundred bytes of a goroutine's initial 8 KB stack, and a request that
// grows its stack to 16 KB before parking keeps 16 KB while it waits
// (docs/performance.md, "Idle long-polls"; measure with
// bench/idle-floor.sh).
func (s *Subscriber) wait(w http.ResponseWriter, r *http.Request, key string, sub pushstore.Subscription) {
	var timeout <-chan time.Time
	if s.Timeout > 0 {
		t := time.NewTimer(time.Duration(s.Timeout))
		defer t.Stop()
		timeout = t.C
	}
	if c := s.logger.Check(zapcore.DebugLevel, "subscriber waiting"); c != nil {
		c.Write(zap.String("channel", key))
	}
	select {
	case <-sub.Ready():
		s.answer(w, r, sub)
	case <-timeout:
		sub.Cancel()
		s.answer(w, r, sub) // a message that came just before the cancel, or 304
	case <-r.Context().Done():
		sub.Cancel()
	}
}

// answer writes what a long-poll's subscription was sent: its message, or
// the status of its end (304 when it has none yet: the timeout).
func (s *Subscriber) answer(w http.ResponseWriter, r *http.Request, sub pushstore.Subscription) {
	var buf [1]pushstore.Delivery
	ds, end := sub.Take(buf[:0])
	switch {
	case len(ds) > 0:
		s.writeMessage(w, r, ds[0].Message)
	case end == pushstore.Deleted:
		writeEmpty(w, http.StatusGone)
	case end == pushstore.Displaced:
		writeEmpty(w, http.StatusConflict)
	default: // the timeout, Shutdown or Retry
		w.WriteHeader(http.StatusNotModified)
	}
}

// wire is a message's response header values, formatted on its first
// delivery and shared by every later one.
type wire struct {
	lastModified  string
	etag          string
	contentLength string
}

// wireSlot is where a message keeps its wire.
var wireSlot = pushstore.NewMemoSlot()

func wireOf(m *pushstore.Message) *wire {
	return m.Memo(wireSlot, func(m *pushstore.Message) any {
		return &wire{lastModified: lastModified(m.ID), etag: etag(m.ID), contentLength: strconv.Itoa(len(m.Body))}
	}).(*wire)
}

// writeMessage sends one message (docs/protocol.md, "The answer").
func (s *Subscriber) writeMessage(w http.ResponseWriter, r *http.Request, m *pushstore.Message) {
	wire := wireOf(m)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.push.message_id", &m.ID) // a pointer: no allocation; formatted only if a log asks
	}
	// One backing array for this response's header values: middleware such
	// as `header` may rewrite a value in place, so none may be shared.
	v := [...]string{m.ContentType, wire.lastModified, wire.etag, "If-None-Match, If-Modified-Since",
		s.AllowOrigin, "Last-Modified, Etag", wire.contentLength, "nosniff"}
	vals := v[:]
	h := w.Header()
	if m.ContentType != "" {
		h["Content-Type"] = vals[0:1:1]
	} else {
		h["Content-Type"] = nil // no Content-Type, and no sniffing either
	}
	h["Last-Modified"] = vals[1:2:2]
	h["Etag"] = vals[2:3:3]
	h["Vary"] = vals[3:4:4]
	h["Access-Control-Allow-Origin"] = vals[4:5:5]
	h["Access-Control-Expose-Headers"] = vals[5:6:6]
	h["Content-Length"] = vals[6:7:7]
	h["X-Content-Type-Options"] = vals[7:8:8] // the publisher chose the Content-Type
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(m.Body)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Subscriber)(nil)
	_ caddy.Validator             = (*Subscriber)(nil)
	_ caddyhttp.MiddlewareHandler = (*Subscriber)(nil)
)
