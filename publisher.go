package caddypush

import (
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/gorilla/websocket"

	"github.com/caddypush/caddy-push/pushstore"
)

func init() {
	caddy.RegisterModule(Publisher{})
}

// Publisher defaults, as the nginx module's.
const (
	DefaultMaxMessageBufferLength = 10
	DefaultMinMessageBufferLength = 1
	DefaultMessageTimeout         = time.Hour
	DefaultMaxMessageSize         = 1 << 20
)

// Publisher is the push_publisher handler: POST publishes the request body
// to a channel (201 if a waiting subscriber received it, 202 if none did),
// PUT creates a channel, GET returns channel info and DELETE removes a
// channel, answering its waiting subscribers with 410. It sets the
// placeholders {http.push.channel_id}, {http.push.message_id} (the new
// message's id, "time:tag") and {http.push.subscribers} (waiters before
// the broadcast).
type Publisher struct {
	ChannelConfig

	// Transports are the ways the location publishes: `http` (POST
	// publishes, PUT creates, GET shows and DELETE removes a channel) and
	// `websocket` (each text or binary frame a client sends on a WebSocket
	// is published and answered with a text frame holding the channel's
	// info). A request made in another way gets 403. Empty means both.
	// Not set on a pub/sub location, whose transports say how it
	// publishes. Equivalent to nchan_publisher's arguments.
	Transports []string `json:"transports,omitempty"`

	// StoreMessages keeps published messages for subscribers that ask later.
	// When false, a message reaches only the subscribers waiting at the
	// moment it is published. Equivalent to nginx push_store_messages.
	// Default: true.
	StoreMessages *bool `json:"store_messages,omitempty"`

	// MaxMessageBufferLength is the most messages a channel stores; when a
	// publication exceeds it, the oldest message is removed. Equivalent to
	// nginx push_max_message_buffer_length. Default: 10.
	MaxMessageBufferLength *int `json:"max_message_buffer_length,omitempty"`

	// MinMessageBufferLength is how many of the newest messages are never
	// removed by min_message_recipients or delete_oldest_received_message
	// (expiry still applies). Equivalent to nginx
	// push_min_message_buffer_length. Default: 1.
	MinMessageBufferLength *int `json:"min_message_buffer_length,omitempty"`

	// MinMessageRecipients, when N > 0, removes a stored message beyond the
	// min buffer once it has been received N times. Zero turns the rule off
	// (nginx 0.69 treated 0 as "remove at once"). Equivalent to nginx
	// push_min_message_recipients. Default: 0.
	MinMessageRecipients int `json:"min_message_recipients,omitempty"`

	// DeleteOldestReceivedMessage removes the oldest stored message right
	// after it is delivered, if more than min_message_buffer_length
	// messages are stored. Equivalent to nginx
	// push_delete_oldest_received_message. Default: false.
	DeleteOldestReceivedMessage bool `json:"delete_oldest_received_message,omitempty"`

	// MessageTimeout is the lifetime of a message from its publication;
	// zero means messages never expire. Equivalent to nginx
	// push_message_timeout. Default: 1h.
	MessageTimeout *caddy.Duration `json:"message_timeout,omitempty"`

	// ChannelTimeout is how long a channel with no messages and no waiting
	// subscribers lives after its last use. Equivalent to nginx
	// push_channel_timeout. Default: 1h.
	ChannelTimeout caddy.Duration `json:"channel_timeout,omitempty"`

	// MaxMessageSize is the largest accepted message body, in bytes;
	// larger bodies get 413 and are not stored. Equivalent to nginx
	// client_max_body_size. Default: 1 MiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// EventSourceEvent is the EventSource event name of every message
	// published here, in place of the request's X-EventSource-Event header
	// (a placeholder expression, evaluated per request; one that comes out
	// empty leaves the header's). It applies to POSTs and to WebSocket
	// frames. Equivalent to nchan_eventsource_event in a publisher
	// location. Default: none (the header's).
	EventSourceEvent string `json:"eventsource_event,omitempty"`

	// BodyTimeout bounds receiving a whole message body, a duration: a body
	// still incomplete when it passes gets 408 and the connection is
	// closed, however steadily it trickles. nginx's client_body_timeout is
	// the nearest equivalent, but bounds only the time between two reads.
	// Default: 30s.
	BodyTimeout caddy.Duration `json:"body_timeout,omitempty"`

	store      pushstore.Store
	opts       pushstore.PublishOptions
	pubsub     bool // part of a pub/sub location (Subscriber.Publish)
	ways       int  // pubHTTP, pubWebSocket
	wsUpgrader *websocket.Upgrader
	logger     *zap.Logger

	bufferErr error // the Caddyfile's min > max buffer length, once its block is read
}

// CaddyModule returns the Caddy module information.
func (Publisher) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.push_publisher",
		New: func() caddy.Module { return new(Publisher) },
	}
}

// Provision sets defaults and finds the push app's store.
func (p *Publisher) Provision(ctx caddy.Context) error {
	p.logger = ctx.Logger()
	p.setDefaults()
	if p.MaxMessageSize == 0 {
		p.MaxMessageSize = DefaultMaxMessageSize
	}
	if p.BodyTimeout == 0 {
		p.BodyTimeout = caddy.Duration(DefaultBodyTimeout)
	}
	p.opts = defaultPublishOptions()
	p.opts.StoreMessages = p.StoreMessages == nil || *p.StoreMessages
	p.opts.MaxBufferLength = intOr(p.MaxMessageBufferLength, DefaultMaxMessageBufferLength)
	p.opts.MinBufferLength = intOr(p.MinMessageBufferLength, DefaultMinMessageBufferLength)
	p.opts.MinRecipients = p.MinMessageRecipients
	p.opts.DeleteOldestReceived = p.DeleteOldestReceivedMessage
	if p.MessageTimeout != nil {
		p.opts.MessageTimeout = time.Duration(*p.MessageTimeout)
	}
	if p.ChannelTimeout != 0 {
		p.opts.ChannelTimeout = time.Duration(p.ChannelTimeout)
	}
	p.ways, _ = parsePublisherTransports(p.Transports) // Validate refuses an unknown name
	// As nchan_publisher, agree ws+meta.nchan when offered (the answers stay
	// plain channel info): a browser fails a handshake that agrees none.
	p.wsUpgrader = p.upgrader(metaProtocol)
	store, err := pushStore(ctx)
	if err != nil {
		return err
	}
	p.store = store
	return nil
}

// Validate checks the configuration.
func (p *Publisher) Validate() error {
	if err := p.validate(); err != nil {
		return err
	}
	if p.multiplexed() && !p.pubsub {
		return fmt.Errorf("a publisher publishes to one channel: channel_id takes one value, and no channel_id_split_delimiter")
	}
	if _, ok := parsePublisherTransports(p.Transports); !ok {
		return fmt.Errorf("unknown publisher transport in %q (want http or websocket)", p.Transports)
	}
	o := p.opts
	switch {
	case o.MaxBufferLength < 0 || o.MinBufferLength < 0:
		return fmt.Errorf("message buffer lengths must not be negative")
	case o.MinBufferLength > o.MaxBufferLength:
		return fmt.Errorf("min_message_buffer_length (%d) is greater than max_message_buffer_length (%d)",
			o.MinBufferLength, o.MaxBufferLength)
	case o.MinRecipients < 0:
		return fmt.Errorf("min_message_recipients must not be negative")
	case o.MessageTimeout < 0 || o.ChannelTimeout < 0:
		return fmt.Errorf("timeouts must not be negative")
	case p.MaxMessageSize < 0 || p.MaxMessageSize > maxSize:
		return fmt.Errorf("max_message_size must be from 0 to %d bytes, got %d", int64(maxSize), p.MaxMessageSize)
	case p.BodyTimeout < 0:
		return fmt.Errorf("body_timeout must not be negative")
	}
	return checkEventSetting(p.EventSourceEvent)
}

const publisherMethods = "GET, POST, PUT, DELETE, OPTIONS"

// ServeHTTP answers a publisher request (docs/protocol.md, "Publisher").
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	// a POST's body read lifts it
	closeUnlessRead(w, r)
	way := pubHTTP // a pub/sub location hands over requests only
	if !p.pubsub && isWebSocketUpgrade(r) {
		way = pubWebSocket
	}
	if p.ways&way == 0 {
		refusePublisherTransport(w, way == pubWebSocket)
		return nil
	}
	if r.Method == http.MethodOptions {
		p.writeCORS(w, r, "Content-Type, Origin", publisherMethods)
		return nil
	}
	p.setCORS(w.Header(), r)
	_, key, ok := p.channelKey(w, r)
	if !ok {
		return nil
	}
	p.nameEvent(r)
	if way == pubWebSocket {
		if lineBreakIn(r.Header) {
			writeText(w, http.StatusBadRequest, lineBreakText)
			return nil
		}
		p.serveWebSocket(w, r, key)
		return nil
	}
	switch r.Method {
	case http.MethodPost:
		return p.publish(w, r, key)
	case http.MethodPut:
		info, err := p.store.Touch(key, p.opts.ChannelTimeout)
		if err != nil {
			return storeRefusal(w, err)
		}
		writeInfo(w, r, http.StatusOK, info)
	case http.MethodGet:
		info, err := p.store.Info(key)
		if err != nil {
			return missingRefusal(w, err)
		}
		writeInfo(w, r, http.StatusOK, info)
	case http.MethodDelete:
		info, err := p.store.Delete(key)
		if err != nil {
			return missingRefusal(w, err)
		}
		p.logger.Debug("channel deleted", zap.String("channel", key), zap.Int("waiters", info.Subscribers))
		writeInfo(w, r, http.StatusOK, info)
	default:
		if _, err := p.store.Info(key); err != nil {
			return missingRefusal(w, err)
		}
		w.Header().Set("Allow", publisherMethods)
		writeEmpty(w, http.StatusMethodNotAllowed)
	}
	return nil
}

// nameEvent sets r's X-EventSource-Event to eventsource_event, when it has
// one: what the request publishes is named so.
func (p *Publisher) nameEvent(r *http.Request) {
	if p.EventSourceEvent == "" {
		return
	}
	if v := eventName(replaceAll(r, p.EventSourceEvent)); v != "" {
		r.Header.Set("X-EventSource-Event", v)
	}
}

// checkEventSetting refuses an eventsource_event setting that holds a line
// break, which no event name may hold (eventName would drop the name at
// run time, silently).
func checkEventSetting(v string) error { return checkLine("eventsource_event", v) }

// checkLine refuses a setting that is written as one line of an
// EventSource stream and holds a line break.
func checkLine(name, v string) error {
	if strings.ContainsAny(v, "\r\n") {
		return fmt.Errorf("%s %q holds a line break, which one line of an event stream cannot hold", name, v)
	}
	return nil
}

// eventName is v as an EventSource event name: "" (none) when it holds a
// line break, which would end the `event:` line and let the rest forge
// lines of the event (a placeholder such as {query.ev} is decoded).
func eventName(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return ""
	}
	return v
}

// lineBreakIn reports whether the X-EventSource-Event or Content-Type of a
// request, which what it publishes is stored with, holds a line break.
// net/http refuses one in a header a client sends, but a handler before
// this one may set them from placeholders (request_header ... {query.ev}
// decodes %0A): a line break would forge lines of EventSource events and
// multipart part headers, and the Redis store ends each of the two with a
// newline before the body.
func lineBreakIn(h http.Header) bool {
	return strings.ContainsAny(h.Get("X-EventSource-Event"), "\r\n") || strings.ContainsAny(h.Get("Content-Type"), "\r\n")
}

// lineBreakText is the reason of the 400 answering lineBreakIn.
const lineBreakText = "X-EventSource-Event or Content-Type holds a line break."

// replaceAll evaluates the placeholders of expr for r.
func replaceAll(r *http.Request, expr string) string {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		return repl.ReplaceAll(expr, "")
	}
	return expr
}

func (p *Publisher) publish(w http.ResponseWriter, r *http.Request, key string) error {
	_, err := publishRequest(w, r, p.store, key, bodyLimits{p.MaxMessageSize, time.Duration(p.BodyTimeout)}, p.opts, p.logger)
	return err
}

// publishRequest reads a POST body, publishes it and answers as
// docs/protocol.md says; the publisher handler and the admin API share it. It
// counts and returns the status it answered with.
func publishRequest(w http.ResponseWriter, r *http.Request, store pushstore.Store, key string,
	limits bodyLimits, opts pushstore.PublishOptions, logger *zap.Logger,
) (status int, err error) {
	defer func() { countPublish(status) }()
	if lineBreakIn(r.Header) {
		writeText(w, http.StatusBadRequest, lineBreakText)
		return http.StatusBadRequest, nil
	}
	bd, err := readBody(w, r, limits.maxSize, limits.timeout)
	if err != nil {
		return bodyRefusal(w, err, limits)
	}
	defer bd.release()
	msg := &pushstore.Message{Body: bd.data, Event: r.Header.Get("X-EventSource-Event")}
	if ct := r.Header["Content-Type"]; len(ct) > 0 {
		msg.ContentType = ct[0]
	}
	res, err := store.Publish(key, msg, opts)
	if err != nil {
		return refusalStatus(err), storeRefusal(w, err)
	}
	logPublished(logger, key, len(bd.data), res)
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.push.message_id", res.ID) // formatted only if a log asks
		repl.Set("http.push.subscribers", res.Info.Subscribers)
	}
	status = publishedStatus(res)
	if status == http.StatusCreated {
		// Let the subscribers the publication woke write first, as nchan
		// does: on a busy or one-core server the publisher's answer would
		// otherwise go out before the message reaches anyone.
		runtime.Gosched()
	}
	writeInfo(w, r, status, res.Info)
	return status, nil
}

// publishedStatus is the status of a publication: 201 if a subscriber
// received it, 202 if none did.
func publishedStatus(res pushstore.PublishResult) int {
	if res.Delivered > 0 {
		return http.StatusCreated
	}
	return http.StatusAccepted
}

// logPublished logs a publication of n bytes to key at debug level.
func logPublished(logger *zap.Logger, key string, n int, res pushstore.PublishResult) {
	if c := logger.Check(zapcore.DebugLevel, "message published"); c != nil {
		c.Write(zap.String("channel", key), zap.Int("bytes", n),
			zap.Int64("time", res.ID.Time), zap.Int64("tag", res.ID.Tag), zap.Int("delivered", res.Delivered))
	}
}

// bodyLimits bound reading one publication body.
type bodyLimits struct {
	maxSize int64         // max_message_size
	timeout time.Duration // body_timeout; 0: none
}

// bodyRefusal answers a body that could not be read. The rest of the body
// is left unread: net/http closes the connection after the answer when
// more than a little is left (gracefully, so the client reads the answer
// first; a Connection: close of ours would skip that and reset the
// connection under a client still sending), and a timed-out body keeps
// its expired deadline, so nothing waits for the rest of it.
func bodyRefusal(w http.ResponseWriter, err error, limits bodyLimits) (int, error) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeText(w, http.StatusRequestEntityTooLarge, "Message body is larger than max_message_size ("+
			strconv.FormatInt(limits.maxSize, 10)+" bytes).")
		return http.StatusRequestEntityTooLarge, nil
	case errors.Is(err, errBodyMemory):
		w.Header().Set("Retry-After", "1")
		writeText(w, http.StatusServiceUnavailable, "Service unavailable: the message bodies being received "+
			"fill max_body_memory ("+strconv.FormatInt(bodies.max.Load(), 10)+" bytes); try again.")
		return http.StatusServiceUnavailable, nil
	case errors.Is(err, errBodyTimeout):
		writeText(w, http.StatusRequestTimeout, "Message body not received within body_timeout ("+
			limits.timeout.String()+").")
		return http.StatusRequestTimeout, nil
	}
	status := http.StatusBadRequest // short body, broken chunking, client gone
	if isTimeout(err) {
		status = http.StatusRequestTimeout // the server's read_body or read idle timeout
	}
	countRefusal(status) // answered by handle_errors or Caddy, not writeText
	return status, caddyhttp.Error(status, fmt.Errorf("reading message body: %w", err))
}

// defaultPublishOptions are a publisher location's settings with nothing
// configured.
func defaultPublishOptions() pushstore.PublishOptions {
	return pushstore.PublishOptions{
		StoreMessages:   true,
		MaxBufferLength: DefaultMaxMessageBufferLength,
		MinBufferLength: DefaultMinMessageBufferLength,
		MessageTimeout:  DefaultMessageTimeout,
		ChannelTimeout:  pushstore.DefaultChannelTimeout,
	}
}

// pushStore returns the store of the push app, loading the app if the
// config does not mention it.
func pushStore(ctx caddy.Context) (pushstore.Store, error) {
	appIface, err := ctx.App("push")
	if err != nil {
		return nil, fmt.Errorf("loading push app: %v", err)
	}
	return appIface.(*App).Store(), nil
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Publisher)(nil)
	_ caddy.Validator             = (*Publisher)(nil)
	_ caddyhttp.MiddlewareHandler = (*Publisher)(nil)
)
