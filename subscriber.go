package caddypush

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddypush/caddy-push/pushstore"
)

func init() {
	caddy.RegisterModule(Subscriber{})
}

// Subscriber is the push_subscriber handler. A GET is a subscriber on its
// channel (or channels), by the transport the request asks for among those
// the location serves: a long-poll or interval-poll returns the first
// message newer than the request's cursor, with the Last-Modified and Etag
// that identify it (waiting for one, with long-poll: until a message is
// published (200), the channel is deleted (410), it is displaced by `last`
// concurrency (409) or its timeout passes (304)); a stream (EventSource,
// WebSocket, multipart/mixed, chunked, raw) is sent every message after its
// cursor as it comes. With Publish set it is a pub/sub location (Caddyfile
// push_pubsub): POST, PUT and DELETE work as on a push_publisher, and the
// frames its WebSocket clients send are published. It sets the
// placeholders {http.push.channel_id} and {http.push.message_id} (the id
// of a long-poll's message, "time:tag").
type Subscriber struct {
	ChannelConfig

	// Transports are the ways this location serves subscribers:
	// `long-poll`, `interval-poll`, `eventsource`, `websocket`,
	// `multipart-mixed`, `chunked`, `http-raw-stream` (nchan's names work
	// too: longpoll, intervalpoll, es, ws, multipart, http-chunked, ...). A
	// request is matched to one by its headers: a WebSocket upgrade, Accept
	// text/event-stream, TE chunked (HTTP/1.1), Accept multipart/mixed, else
	// the raw stream if served, else long-poll (or interval-poll); one the
	// location does not serve gets 406. On a pub/sub location `http` turns
	// on publishing with POST and PUT (and `websocket` with frames).
	// Equivalent to the arguments of nchan_subscriber / nchan_pubsub (and
	// of the push module's push_subscriber). Default: long-poll eventsource
	// websocket multipart-mixed chunked (and http on a pub/sub location).
	Transports []string `json:"transports,omitempty"`

	// Mode is the older way to name one transport: `long-poll` or
	// `interval-poll`; Transports replaces it. Default: empty.
	Mode string `json:"mode,omitempty"`

	// Concurrency decides what happens when a channel already has
	// subscribers: `broadcast` lets any number subscribe, `first` refuses
	// the new request with 409, `last` ends every current subscriber with
	// 409 (a stream is closed naming 409). Equivalent to nginx
	// push_subscriber_concurrency (nchan has none). Default: broadcast.
	Concurrency string `json:"concurrency,omitempty"`

	// Timeout is how long a long-poll waits before it is answered with
	// 304, and how long a stream may go without a message before it is
	// ended naming 408; zero is no limit. Equivalent to nginx
	// push_subscriber_timeout and nchan_subscriber_timeout. Default: 0.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// AuthorizedChannelsOnly forbids subscribers to create channels: a
	// request for a channel that does not exist gets 403. Equivalent to
	// nginx push_authorized_channels_only (nchan:
	// nchan_subscribe_existing_channels_only). Default: false.
	AuthorizedChannelsOnly bool `json:"authorized_channels_only,omitempty"`

	// MaxChannelSubscribers is how many subscribers (long-polls and
	// streams) one channel may have; the next gets 403. Zero is unlimited.
	// Equivalent to nginx push_max_channel_subscribers and nchan
	// nchan_max_channel_subscribers. Default: 0.
	MaxChannelSubscribers int `json:"max_channel_subscribers,omitempty"`

	// FirstMessage is where a subscriber without a cursor starts: `oldest`
	// (the oldest stored message), `newest` or `now` (the next message
	// published), a number N (the N-th oldest stored message; 1 is the
	// oldest) or -N (the N-th newest: the last N messages). Equivalent to
	// nginx push_ignore_queue_on_no_cache (on = newest) and nchan
	// nchan_subscriber_first_message, whose `newest` is our newest too.
	// Default: oldest.
	FirstMessage string `json:"first_message,omitempty"`

	// EventSourcePingInterval is how often an EventSource stream is sent a
	// keep-alive (`event: ping`, which no page sees), a duration; zero
	// sends none. Equivalent to nchan_eventsource_ping_interval. Default: 0.
	EventSourcePingInterval caddy.Duration `json:"eventsource_ping_interval,omitempty"`

	// EventSourcePingEvent is the `event:` line of an EventSource
	// keep-alive; empty sends none. Equivalent to
	// nchan_eventsource_ping_event. Default: ping.
	EventSourcePingEvent *string `json:"eventsource_ping_event,omitempty"`

	// EventSourcePingData is the `data:` line of an EventSource keep-alive;
	// empty sends none. With data the keep-alive is an event a page sees
	// (a listener for its event name, or onmessage when it has none).
	// Equivalent to nchan_eventsource_ping_data. Default: none.
	EventSourcePingData string `json:"eventsource_ping_data,omitempty"`

	// EventSourcePingComment is a comment line (`:<comment>`) that opens an
	// EventSource keep-alive; empty sends none. Equivalent to
	// nchan_eventsource_ping_comment. Default: none. (With the event, data
	// and comment all empty, the keep-alive is an empty comment, `:`.)
	EventSourcePingComment string `json:"eventsource_ping_comment,omitempty"`

	// WebSocketPingInterval is how often a WebSocket is sent a ping, a
	// duration; one whose previous ping got no pong is closed. Zero sends
	// none. Equivalent to nchan_websocket_ping_interval. Default: 0.
	WebSocketPingInterval caddy.Duration `json:"websocket_ping_interval,omitempty"`

	// WebSocketClientHeartbeat answers a WebSocket client's own keep-alive,
	// for clients (browsers) that cannot send a ping: a message from the
	// client that is exactly In (text or binary) is answered with a text
	// message Out, and is neither published nor refused. Equivalent to
	// nchan_websocket_client_heartbeat <in> <out>. Default: none.
	WebSocketClientHeartbeat *WebSocketHeartbeat `json:"websocket_client_heartbeat,omitempty"`

	// StreamQueueSize is how far a stream's client may fall behind, in
	// bytes of messages sent to it and not yet written to its connection;
	// one further behind is ended (a close naming it), its connection
	// closed, and resumes from its last id. The bytes counted are the
	// messages' bodies (plus 64 each), not the frames each message is
	// encoded into once for all subscribers, so a stream far behind may
	// keep about twice this alive. nchan has no equivalent (it holds
	// whatever a client cannot take). Default: 1 MiB.
	StreamQueueSize int64 `json:"stream_queue_size,omitempty"`

	// HTTPRawStreamSeparator follows each message of an http-raw-stream
	// subscriber; a newline is added when it does not end with one, as
	// nchan does, unless it is empty (then the bodies follow each other).
	// Equivalent to nchan_subscriber_http_raw_stream_separator. Default:
	// a newline.
	HTTPRawStreamSeparator *string `json:"http_raw_stream_separator,omitempty"`

	// EventSourceEvent is the event name an EventSource subscriber here is
	// sent with every message, in place of the message's own (a
	// placeholder expression, evaluated when the stream opens; one that
	// comes out empty leaves the messages' own). On a pub/sub location it
	// also names what is published there. Equivalent to
	// nchan_eventsource_event in a subscriber location. Default: none.
	EventSourceEvent string `json:"eventsource_event,omitempty"`

	// LongPollMultipart lets one long-poll answer take every message
	// waiting for it: `on` sends two or more as one multipart/mixed body
	// (a part each, with the message's Content-Type), `raw` as the bodies
	// each followed by a newline, both with the Last-Modified and Etag of
	// the last; one message is answered as usual. `off` answers one
	// message per poll. Interval-polls answer one either way. Equivalent
	// to nchan_longpoll_multipart_response. Default: off.
	LongPollMultipart string `json:"longpoll_multipart_response,omitempty"`

	// Publish makes this a pub/sub location (Caddyfile push_pubsub,
	// nchan_pubsub): its settings are a publisher location's. Default: none.
	Publish *Publisher `json:"publish,omitempty"`

	store        pushstore.Store
	concurrency  pushstore.Concurrency
	start        pushstore.Start
	transports   transportSet
	httpPublish  bool // POST and PUT publish (pub/sub)
	wsPublish    bool // WebSocket frames publish (pub/sub)
	rawSeparator string
	esPing       []byte // the EventSource keep-alive (eventSourcePing)
	heartbeat    *heartbeat
	lpMultipart  lpMode
	wsUpgrader   *websocket.Upgrader
	logger       *zap.Logger
}

// Subscriber modes (Mode), the push module's two transports.
const (
	ModeLongPoll     = "long-poll"
	ModeIntervalPoll = "interval-poll"
)

// DefaultStreamQueueSize is a stream's StreamQueueSize when none is set.
const DefaultStreamQueueSize = 1 << 20

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
	registerConn(ctx)
	var err error
	if err = s.parseTransports(); err != nil {
		return err
	}
	c, ok := concurrencies[s.Concurrency]
	if !ok {
		return fmt.Errorf("unknown concurrency %q (want broadcast, first or last)", s.Concurrency)
	}
	s.concurrency = c
	if s.start, err = parseFirstMessage(s.FirstMessage); err != nil {
		return err
	}
	if s.StreamQueueSize == 0 {
		s.StreamQueueSize = DefaultStreamQueueSize
	}
	if s.lpMultipart, err = parseLongPollMultipart(s.LongPollMultipart); err != nil {
		return err
	}
	s.rawSeparator = "\n"
	if p := s.HTTPRawStreamSeparator; p != nil {
		s.rawSeparator = *p
		if s.rawSeparator != "" && !strings.HasSuffix(s.rawSeparator, "\n") {
			s.rawSeparator += "\n"
		}
	}
	s.esPing = s.eventSourcePing()
	s.heartbeat = s.WebSocketClientHeartbeat.prepare()
	s.wsUpgrader = s.upgrader(metaProtocol)
	if s.Publish != nil {
		s.Publish.ChannelConfig = s.ChannelConfig
		s.Publish.pubsub = true
		if s.Publish.EventSourceEvent == "" {
			s.Publish.EventSourceEvent = s.EventSourceEvent
		}
		if err := s.Publish.Provision(ctx); err != nil {
			return err
		}
	}
	store, err := pushStore(ctx)
	if err != nil {
		return err
	}
	s.store = store
	return nil
}

// parseTransports reads Transports (or Mode) into the location's set, and
// on a pub/sub location which ways it publishes.
func (s *Subscriber) parseTransports() error {
	s.transports, s.httpPublish, s.wsPublish = 0, false, false
	names := s.Transports
	if len(names) == 0 && s.Mode != "" {
		names = []string{s.Mode}
	}
	if len(names) == 0 {
		for _, t := range defaultTransports {
			s.transports |= 1 << t
		}
		s.httpPublish, s.wsPublish = true, true
	}
	for _, n := range names {
		if n == "http" && s.Publish != nil {
			s.httpPublish = true
			continue
		}
		t, ok := transportAliases[n]
		if !ok {
			return fmt.Errorf("unknown transport %q (want long-poll, interval-poll, eventsource, websocket, "+
				"multipart-mixed, chunked or http-raw-stream)", n)
		}
		s.transports |= 1 << t
		if t == tWebSocket {
			s.wsPublish = true
		}
	}
	if s.transports == 0 {
		return fmt.Errorf("a subscriber location needs at least one subscriber transport")
	}
	return nil
}

var concurrencies = map[string]pushstore.Concurrency{"": pushstore.Broadcast, "broadcast": pushstore.Broadcast,
	"first": pushstore.First, "last": pushstore.Last}

// parseFirstMessage reads first_message: oldest, newest or now, or a
// number.
func parseFirstMessage(v string) (pushstore.Start, error) {
	switch v {
	case "", "oldest":
		return pushstore.Start{}, nil
	case "newest", "now":
		return pushstore.Start{Newest: true}, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return pushstore.Start{}, fmt.Errorf("unknown first_message %q (want oldest, newest, now or a number such as 5 or -20)", v)
	}
	if n == 0 { // nchan: 0 is newest
		return pushstore.Start{Newest: true}, nil
	}
	return pushstore.Start{At: n}, nil
}

// Validate checks the configuration.
func (s *Subscriber) Validate() error {
	if err := s.validate(); err != nil {
		return err
	}
	if err := s.parseTransports(); err != nil {
		return err
	}
	if _, err := parseFirstMessage(s.FirstMessage); err != nil {
		return err
	}
	if _, err := parseLongPollMultipart(s.LongPollMultipart); err != nil {
		return err
	}
	switch {
	case s.Timeout < 0:
		return fmt.Errorf("timeout must not be negative")
	case s.MaxChannelSubscribers < 0:
		return fmt.Errorf("max_channel_subscribers must not be negative")
	case s.EventSourcePingInterval < 0 || s.WebSocketPingInterval < 0:
		return fmt.Errorf("ping intervals must not be negative")
	case s.StreamQueueSize < 0:
		return fmt.Errorf("stream_queue_size must not be negative")
	}
	if err := checkEventSetting(s.EventSourceEvent); err != nil {
		return err
	}
	for _, l := range s.esPingLines() {
		if err := checkLine(l.name, l.text); err != nil {
			return err
		}
	}
	if s.Publish != nil {
		if len(s.Publish.Transports) > 0 {
			return fmt.Errorf("a pub/sub location publishes in the ways its own transports list says (http, websocket): " +
				"its publisher takes no transports")
		}
		return s.Publish.Validate()
	}
	return nil
}

const subscriberMethods = "GET, OPTIONS"

// methods is what the location serves, for a 405's Allow and an OPTIONS
// answer's Access-Control-Allow-Methods: a pub/sub location that publishes
// over WebSocket only takes DELETE but not POST or PUT.
func (s *Subscriber) methods() string {
	switch {
	case s.Publish != nil && s.httpPublish:
		return publisherMethods
	case s.Publish != nil:
		return "GET, DELETE, OPTIONS"
	}
	return subscriberMethods
}

// ServeHTTP answers a subscriber request (docs/protocol.md, "Subscriber").
// A single-channel long-poll, the push module's protocol, is answered here
// with as few calls as it can be (see wait); the other transports have
// their own functions.
func (s *Subscriber) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method != http.MethodGet {
		closeUnlessRead(w, r) // a publication's body read lifts it
	}
	switch r.Method {
	case http.MethodGet:
	case http.MethodOptions:
		if s.Publish != nil {
			s.writeCORS(w, r, "If-None-Match, If-Modified-Since, Last-Event-ID, Content-Type, X-EventSource-Event, Origin",
				s.methods())
		} else {
			s.writeCORS(w, r, "If-None-Match, If-Modified-Since, Origin", subscriberMethods)
		}
		return nil
	case http.MethodPost, http.MethodPut, http.MethodDelete:
		if s.Publish != nil && (s.httpPublish || r.Method == http.MethodDelete) {
			if len(s.ChannelIDs) > 0 || s.ChannelIDSplitDelimiter != "" {
				writeText(w, http.StatusForbidden, "Publishing to several channels at once is not supported.")
				return nil
			}
			return s.Publish.ServeHTTP(w, r, nil)
		}
		fallthrough
	default:
		if r.Method == http.MethodConnect && strings.EqualFold(r.Proto, "websocket") && s.transports.has(tWebSocket) {
			// HTTP/3 (quic-go) offers RFC 9220's extended CONNECT, which
			// Caddy cannot turn off; the module's WebSockets are HTTP/1.1's.
			writeText(w, http.StatusNotImplemented, "WebSocket over HTTP/2 or HTTP/3 (extended CONNECT) is not supported; "+
				"open the WebSocket over HTTP/1.1.")
			return nil
		}
		w.Header().Set("Allow", s.methods())
		writeEmpty(w, http.StatusMethodNotAllowed)
		return nil
	}
	// No cache may store or replay an answer: each depends on the request's
	// cursor and on what was published since.
	w.Header()["Cache-Control"] = []string{"no-store"}
	// allow_origin goes on every answer, refusals and 304s included: a page
	// on another origin cannot read an answer without it (the streams'
	// heads and a message's answer count on it being set here).
	s.setCORS(w.Header(), r)
	t := s.transports.requested(r)
	if !s.transports.has(t) {
		refuseTransport(w, t, s.transports)
		return nil
	}
	if t > tIntervalPoll || s.multiplexed() {
		return s.serveFollow(w, r, t)
	}
	logTransport(r, t)
	_, key, ok := s.channelKey(w, r)
	if !ok {
		return nil
	}
	ims, inm := r.Header.Get("If-Modified-Since"), r.Header.Get("If-None-Match")
	req := pushstore.SubscribeRequest{
		Cursor:      ParseCursor(ims, inm),
		HasCursor:   ims != "" || inm != "",
		Start:       s.start,
		Create:      !s.AuthorizedChannelsOnly,
		Wait:        t == tLongPoll,
		Concurrency: s.concurrency,
		MaxWaiters:  s.MaxChannelSubscribers,
	}
	if !req.HasCursor && (r.Header["Last-Event-Id"] != nil || strings.Contains(r.URL.RawQuery, "last_event_id=")) {
		cursors, err := streamCursor(r, 1)
		if err != nil {
			writeText(w, http.StatusBadRequest, badIDText)
			return nil
		}
		if cursors != nil {
			req.Cursor, req.HasCursor = cursors[0], true
		}
	}
	if t == tLongPoll && s.lpMultipart != lpOne {
		var cursors []pushstore.MessageID
		if req.HasCursor {
			cursors = []pushstore.MessageID{req.Cursor}
		}
		return s.pollFollowing(w, r, []string{key}, t, cursors)
	}
	res, err := s.store.Subscribe(key, req)
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
	streams[tLongPoll].Add(1)
	defer streams[tLongPoll].Add(-1)
	conn := watchConn(r)
	defer unwatch(conn)
	select {
	case <-sub.Ready():
		s.answer(w, r, sub)
	case <-timeout:
		sub.Cancel()
		s.answer(w, r, sub) // a message that came just before the cancel, or 304
	case <-r.Context().Done():
		sub.Cancel()
	case <-conn.Gone():
		sub.Cancel()
	}
}

// answer writes what a long-poll's subscription was sent: its message, or
// the status of its end (304 when it has none yet: the timeout).
func (s *Subscriber) answer(w http.ResponseWriter, r *http.Request, sub pushstore.Subscription) {
	var buf [1]pushstore.Delivery
	ds, end := sub.Take(buf[:0])
	if len(ds) == 0 {
		writePollEnd(w, end)
		return
	}
	s.writeMessage(w, r, ds[0].Message)
}

// writePollEnd answers a long-poll whose subscription ended without a
// message: 410 (deleted), 409 (displaced), else 304 (the timeout,
// Shutdown or Retry).
func writePollEnd(w http.ResponseWriter, end pushstore.End) {
	switch end {
	case pushstore.Deleted:
		writeEmpty(w, http.StatusGone)
	case pushstore.Displaced:
		writeEmpty(w, http.StatusConflict)
	default:
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

// setMessageID sets {http.push.message_id} to the id of m, the message a
// long-poll is answered with (the last of several).
func setMessageID(r *http.Request, m *pushstore.Message) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.push.message_id", &m.ID) // a pointer: no allocation; formatted only if a log asks
	}
}

// writeMessage sends one message (docs/protocol.md, "The answer").
func (s *Subscriber) writeMessage(w http.ResponseWriter, r *http.Request, m *pushstore.Message) {
	wire := wireOf(m)
	setMessageID(r, m)
	// One backing array for this response's header values: middleware such
	// as `header` may rewrite a value in place, so none may be shared.
	v := [...]string{m.ContentType, wire.lastModified, wire.etag, "If-None-Match, If-Modified-Since",
		s.allowOrigin(r), "Last-Modified, Etag", wire.contentLength, "nosniff"}
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
	s.setCredentials(h)
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
