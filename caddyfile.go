package caddypush

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("push", parseGlobalOption)
	// In this order (before respond, so also before file_server and
	// reverse_proxy); the nchan_ names are the same directives.
	for _, d := range []struct {
		name  string
		parse httpcaddyfile.UnmarshalHandlerFunc
	}{
		{"push_publisher", parsePublisher}, {"push_subscriber", parseSubscriber}, {"push_pubsub", parsePubSub},
		{"nchan_publisher", parsePublisher}, {"nchan_subscriber", parseSubscriber}, {"nchan_pubsub", parsePubSub},
	} {
		httpcaddyfile.RegisterHandlerDirective(d.name, d.parse)
		httpcaddyfile.RegisterDirectiveOrder(d.name, httpcaddyfile.Before, "respond")
	}
}

// nginxNames maps every nginx directive name we accept to its short name,
// so nginx lines can be pasted in without their `;`.
var nginxNames = map[string]string{
	"push_max_reserved_memory":            "max_reserved_memory",
	"push_channel_id":                     "channel_id",
	"push_channel_group":                  "channel_group",
	"push_max_channel_id_length":          "max_channel_id_length",
	"push_store_messages":                 "store_messages",
	"push_max_message_buffer_length":      "max_message_buffer_length",
	"push_min_message_buffer_length":      "min_message_buffer_length",
	"push_message_buffer_length":          "message_buffer_length",
	"push_min_message_recipients":         "min_message_recipients",
	"push_delete_oldest_received_message": "delete_oldest_received_message",
	"push_message_timeout":                "message_timeout",
	"push_channel_timeout":                "channel_timeout",
	"client_max_body_size":                "max_message_size",
	"client_body_timeout":                 "body_timeout",
	"push_subscriber_concurrency":         "concurrency",
	"push_subscriber_timeout":             "timeout",
	"push_authorized_channels_only":       "authorized_channels_only",
	"push_max_channel_subscribers":        "max_channel_subscribers",
	"push_ignore_queue_on_no_cache":       "first_message",
	"push_allow_origin":                   "allow_origin",

	// nchan's names
	"nchan_channel_id":                           "channel_id",
	"nchan_subscriber_channel_id":                "channel_id",
	"nchan_publisher_channel_id":                 "channel_id",
	"nchan_channel_group":                        "channel_group",
	"nchan_max_channel_id_length":                "max_channel_id_length",
	"nchan_channel_id_split_delimiter":           "channel_id_split_delimiter",
	"nchan_access_control_allow_origin":          "allow_origin",
	"nchan_access_control_allow_credentials":     "allow_credentials",
	"nchan_store_messages":                       "store_messages",
	"nchan_message_buffer_length":                "message_buffer_length",
	"nchan_message_max_buffer_length":            "message_buffer_length",
	"nchan_message_timeout":                      "message_timeout",
	"nchan_channel_timeout":                      "channel_timeout",
	"nchan_subscriber_timeout":                   "timeout",
	"nchan_subscriber_first_message":             "first_message",
	"nchan_max_channel_subscribers":              "max_channel_subscribers",
	"nchan_subscribe_existing_channels_only":     "authorized_channels_only",
	"nchan_eventsource_ping_interval":            "eventsource_ping_interval",
	"nchan_eventsource_ping_event":               "eventsource_ping_event",
	"nchan_eventsource_ping_data":                "eventsource_ping_data",
	"nchan_eventsource_ping_comment":             "eventsource_ping_comment",
	"nchan_websocket_ping_interval":              "websocket_ping_interval",
	"nchan_websocket_client_heartbeat":           "websocket_client_heartbeat",
	"nchan_subscriber_http_raw_stream_separator": "http_raw_stream_separator",
	"nchan_longpoll_multipart_response":          "longpoll_multipart_response",
	"nchan_eventsource_event":                    "eventsource_event",
}

// subdirectives reads the block of a directive: it yields each subdirective
// under its short name and refuses one given twice.
func subdirectives(d *caddyfile.Dispenser, each func(name string) error) error {
	return blockOptions(d, "%s is given more than once", func() (string, error) {
		name := optionName(d)
		if short, ok := nginxNames[name]; ok {
			name = short
		}
		if name == "set" { // nginx: set $push_channel_id <expr>
			name = "channel_id"
			if !d.NextArg() || d.Val() != "$push_channel_id" {
				return "", d.Errf("only 'set $push_channel_id <expression>' is supported here")
			}
		}
		return name, nil
	}, each)
}

// blockOptions reads the options of the block at d: name reads an option's
// name (consuming any tokens that belong to it), a name given twice is
// refused with dupFormat unless it is repeatable, and each handles the
// rest of the line.
func blockOptions(d *caddyfile.Dispenser, dupFormat string, name func() (string, error), each func(name string) error,
	repeatable ...string) error {
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		n, err := name()
		if err != nil {
			return err
		}
		if seen[n] && !slices.Contains(repeatable, n) {
			return d.Errf(dupFormat, n)
		}
		seen[n] = true
		if err := each(n); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalChannelSub parses a subdirective common to both handlers; it
// returns handled=false for any other name.
func (cc *ChannelConfig) unmarshalChannelSub(d *caddyfile.Dispenser, name string) (bool, error) {
	var err error
	switch name {
	case "channel_id":
		args := lineArgs(d)
		if len(args) == 0 || len(args) > maxChannelIDs {
			return true, d.Errf("channel_id takes 1 to %d placeholder expressions, got %d", maxChannelIDs, len(args))
		}
		for _, a := range args {
			id, err := nginxVariables(a)
			if err != nil {
				return true, d.Errf("%v", err)
			}
			if len(args) == 1 {
				cc.ChannelID = id
			} else {
				cc.ChannelIDs = append(cc.ChannelIDs, id)
			}
		}
	case "channel_id_split_delimiter":
		cc.ChannelIDSplitDelimiter, err = oneArg(d)
	case "channel_group":
		if cc.ChannelGroup, err = oneArg(d); err == nil && strings.Contains(cc.ChannelGroup, "/") {
			return true, d.Errf("channel_group '%s' must not contain '/'", cc.ChannelGroup)
		}
	case "max_channel_id_length":
		cc.MaxChannelIDLength, err = intArg(d, 1)
	case "allow_origin":
		// Empty would be the default, *: the widest, not what "" suggests.
		if cc.AllowOrigin, err = oneArg(d); err == nil && cc.AllowOrigin == "" {
			err = d.Errf("allow_origin needs an origin, or * for any")
		}
	case "allow_credentials":
		cc.AllowCredentials, err = onOffArg(d)
	default:
		return false, nil
	}
	return true, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	push_publisher [<matcher>] [http] [websocket] {
//		channel_id                     <placeholder expression>
//		channel_group                  <name>
//		max_channel_id_length          <bytes>
//		allow_origin                   <origin>
//		allow_credentials              on|off
//		store_messages                 on|off
//		max_message_buffer_length      <n>
//		min_message_buffer_length      <n>
//		message_buffer_length          <n>
//		min_message_recipients         <n>
//		delete_oldest_received_message on|off
//		message_timeout                <duration>
//		channel_timeout                <duration>
//		max_message_size               <size>
//		body_timeout                   <duration>
//		eventsource_event              <name>
//	}
//
// The arguments are the ways it publishes, as nchan_publisher's: http
// (requests), websocket (frames on a WebSocket); none means both.
//
// Every subdirective may also be written with its nginx name
// (push_store_messages, client_max_body_size, set $push_channel_id ...) or
// nchan's (nchan_message_buffer_length, ...). Durations take Caddy's forms
// (90s, 2h, 1d) or bare seconds; sizes take Caddy's (10MiB, 10MB) or
// nginx's (10M, 512k, binary units).
func (p *Publisher) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	for _, a := range lineArgs(d) {
		if _, ok := parsePublisherTransports([]string{a}); !ok {
			return d.Errf("unknown publisher transport '%s' (want http or websocket)", a)
		}
		p.Transports = append(p.Transports, a)
	}
	err := subdirectives(d, func(name string) error {
		if name == "channel_id_split_delimiter" {
			return d.Errf("a publisher publishes to one channel: it takes no channel_id_split_delimiter")
		}
		if ok, err := p.unmarshalChannelSub(d, name); ok {
			if err == nil && len(p.ChannelIDs) > 0 {
				return d.Errf("a publisher publishes to one channel: channel_id takes one expression, got %d", len(p.ChannelIDs))
			}
			return err
		}
		if ok, err := p.unmarshalPublisherSub(d, name); ok {
			return err
		}
		return d.Errf("unrecognized push_publisher subdirective '%s'", d.Val())
	})
	if err == nil {
		err = p.bufferErr
	}
	return err
}

// unmarshalPublisherSub parses a publisher subdirective; it returns
// handled=false for any other name.
func (p *Publisher) unmarshalPublisherSub(d *caddyfile.Dispenser, name string) (bool, error) {
	var err error
	switch name {
	case "store_messages":
		var b bool
		b, err = onOffArg(d)
		p.StoreMessages = &b
	case "max_message_buffer_length", "min_message_buffer_length", "message_buffer_length":
		var n int
		if n, err = intArg(d, 0); err != nil {
			return true, err
		}
		if name != "min_message_buffer_length" {
			p.MaxMessageBufferLength = &n
		}
		if name != "max_message_buffer_length" {
			p.MinMessageBufferLength = &n
		}
		// min and max are compared here, but the error is returned once
		// the block is read (bufferErr), from the last such line: either
		// may come first.
		p.bufferErr = nil
		lo := intOr(p.MinMessageBufferLength, DefaultMinMessageBufferLength)
		hi := intOr(p.MaxMessageBufferLength, DefaultMaxMessageBufferLength)
		if lo > hi {
			p.bufferErr = d.Errf("min_message_buffer_length %d is greater than max_message_buffer_length %d "+
				"(defaults: min %d, max %d)", lo, hi, DefaultMinMessageBufferLength, DefaultMaxMessageBufferLength)
		}
	case "min_message_recipients":
		p.MinMessageRecipients, err = intArg(d, 0)
	case "delete_oldest_received_message":
		p.DeleteOldestReceivedMessage, err = onOffArg(d)
	case "message_timeout":
		var dur caddy.Duration
		dur, err = durationArg(d)
		p.MessageTimeout = &dur
	case "channel_timeout":
		p.ChannelTimeout, err = durationArg(d)
	case "max_message_size":
		p.MaxMessageSize, err = sizeArg(d)
	case "body_timeout":
		p.BodyTimeout, err = durationArg(d)
	case "eventsource_event":
		p.EventSourceEvent, err = eventArg(d)
	default:
		return false, nil
	}
	return true, err
}

// expressionArg reads a placeholder expression, nginx variables
// ($arg_name, ...) turned into Caddy placeholders.
func expressionArg(d *caddyfile.Dispenser) (string, error) {
	v, err := oneArg(d)
	if err != nil {
		return "", err
	}
	if v, err = nginxVariables(v); err != nil {
		return "", d.Errf("%v", err)
	}
	return v, nil
}

// eventArg reads eventsource_event: an expression that checkEventSetting
// takes.
func eventArg(d *caddyfile.Dispenser) (string, error) {
	v, err := expressionArg(d)
	if err == nil {
		if cerr := checkEventSetting(v); cerr != nil {
			return "", d.Errf("%v", cerr)
		}
	}
	return v, err
}

// lineArg reads the one argument of an option that is sent as one line of
// an event stream (it may be empty: ""), refusing a line break.
func lineArg(d *caddyfile.Dispenser) (string, error) {
	name := optionName(d)
	v, err := oneArg(d)
	if err == nil {
		if lerr := checkLine(name, v); lerr != nil {
			return "", d.Errf("%v", lerr)
		}
	}
	return v, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	push_subscriber [<matcher>] [<transport>...] {
//		channel_id                 <placeholder expression>...
//		channel_id_split_delimiter <delimiter>
//		channel_group              <name>
//		max_channel_id_length      <bytes>
//		allow_origin               <origin>
//		allow_credentials          on|off
//		concurrency                broadcast|first|last
//		timeout                    <duration>
//		authorized_channels_only   on|off
//		max_channel_subscribers    <n>
//		first_message              oldest|newest|now|<n>|-<n>
//		eventsource_ping_interval  <duration>
//		eventsource_ping_event     <name>|""
//		eventsource_ping_data      <text>|""
//		eventsource_ping_comment   <text>|""
//		websocket_ping_interval    <duration>
//		websocket_client_heartbeat <in> <out>
//		stream_queue_size          <size>
//		http_raw_stream_separator  <separator>
//		longpoll_multipart_response on|off|raw
//		eventsource_event          <name>
//	}
//
// The transports are long-poll, interval-poll, eventsource, websocket,
// multipart-mixed, chunked and http-raw-stream (nchan's names work too:
// longpoll, intervalpoll, es, ws, ...); none listed means long-poll
// eventsource websocket multipart-mixed chunked. channel_id takes up to 7
// expressions, one channel each. Every subdirective may also be written
// with its nginx name (push_subscriber_concurrency,
// push_ignore_queue_on_no_cache on|off, set $push_channel_id ...) or
// nchan's (nchan_subscriber_timeout, nchan_subscriber_first_message, ...).
// nchan_subscriber is the same directive.
func (s *Subscriber) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if err := s.unmarshalTransports(d, false); err != nil {
		return err
	}
	return subdirectives(d, func(name string) error {
		if ok, err := s.unmarshalChannelSub(d, name); ok {
			return err
		}
		if ok, err := s.unmarshalSubscriberSub(d, name); ok {
			return err
		}
		return d.Errf("unrecognized push_subscriber subdirective '%s'", d.Val())
	})
}

// unmarshalTransports reads a subscriber directive's transport list; on a
// pub/sub location `http` is one more (publishing with POST).
func (s *Subscriber) unmarshalTransports(d *caddyfile.Dispenser, pubsub bool) error {
	args := lineArgs(d)
	if pubsub && len(args) > 0 && !slices.ContainsFunc(args, func(a string) bool { return a != "http" }) {
		return d.Errf("a pub/sub location needs a subscriber transport besides http (long-poll, eventsource, websocket, ...)")
	}
	for _, a := range args {
		if _, ok := transportAliases[a]; !ok && !(pubsub && a == "http") {
			extra := ""
			if pubsub {
				extra = " or http"
			}
			return d.Errf("unknown transport '%s' (want long-poll, interval-poll, eventsource, websocket, "+
				"multipart-mixed, chunked, http-raw-stream%s)", a, extra)
		}
		s.Transports = append(s.Transports, a)
	}
	return nil
}

// unmarshalSubscriberSub parses a subscriber subdirective; it returns
// handled=false for any other name.
func (s *Subscriber) unmarshalSubscriberSub(d *caddyfile.Dispenser, name string) (bool, error) {
	var err error
	switch name {
	case "concurrency":
		if s.Concurrency, err = oneArg(d); err == nil {
			if _, ok := concurrencies[s.Concurrency]; !ok {
				return true, d.Errf("unknown concurrency '%s' (want broadcast, first or last)", s.Concurrency)
			}
		}
	case "timeout":
		s.Timeout, err = durationArg(d)
	case "authorized_channels_only":
		s.AuthorizedChannelsOnly, err = onOffArg(d)
	case "max_channel_subscribers":
		s.MaxChannelSubscribers, err = intArg(d, 0)
	case "first_message":
		if d.Val() == "push_ignore_queue_on_no_cache" {
			var on bool
			if on, err = onOffArg(d); on {
				s.FirstMessage = "newest"
			}
			return true, err
		}
		if s.FirstMessage, err = oneArg(d); err == nil {
			if _, perr := parseFirstMessage(s.FirstMessage); perr != nil {
				return true, d.Errf("%v", perr)
			}
		}
	case "eventsource_ping_interval":
		s.EventSourcePingInterval, err = durationArg(d)
	case "eventsource_ping_event":
		var v string
		v, err = lineArg(d)
		s.EventSourcePingEvent = &v
	case "eventsource_ping_data":
		s.EventSourcePingData, err = lineArg(d)
	case "eventsource_ping_comment":
		s.EventSourcePingComment, err = lineArg(d)
	case "websocket_ping_interval":
		s.WebSocketPingInterval, err = durationArg(d)
	case "websocket_client_heartbeat":
		args := lineArgs(d)
		if len(args) != 2 {
			return true, d.ArgErr()
		}
		s.WebSocketClientHeartbeat = &WebSocketHeartbeat{In: args[0], Out: args[1]}
	case "stream_queue_size":
		s.StreamQueueSize, err = sizeArg(d)
	case "http_raw_stream_separator":
		var v string
		v, err = oneArg(d)
		s.HTTPRawStreamSeparator = &v
	case "eventsource_event":
		s.EventSourceEvent, err = eventArg(d)
	case "longpoll_multipart_response":
		if s.LongPollMultipart, err = oneArg(d); err == nil {
			if _, perr := parseLongPollMultipart(s.LongPollMultipart); perr != nil {
				return true, d.Errf("unknown longpoll_multipart_response '%s' (want on, off or raw)", s.LongPollMultipart)
			}
		}
	default:
		return false, nil
	}
	return true, err
}

// unmarshalPubSub sets up a pub/sub location from Caddyfile tokens: a
// subscriber whose Publish is set. Syntax:
//
//	push_pubsub [<matcher>] [<transport>...] [http] {
//		<any push_subscriber or push_publisher subdirective>
//	}
//
// The transports are a subscriber's; `http` publishes with POST (and PUT)
// and `websocket` also publishes the frames clients send. None listed
// means every default subscriber transport, and http. nchan_pubsub is the
// same directive.
func (s *Subscriber) unmarshalPubSub(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	s.Publish = new(Publisher)
	if err := s.unmarshalTransports(d, true); err != nil {
		return err
	}
	err := subdirectives(d, func(name string) error {
		if ok, err := s.unmarshalChannelSub(d, name); ok {
			return err
		}
		if ok, err := s.unmarshalSubscriberSub(d, name); ok {
			return err
		}
		if ok, err := s.Publish.unmarshalPublisherSub(d, name); ok {
			return err
		}
		return d.Errf("unrecognized push_pubsub subdirective '%s'", d.Val())
	})
	if err == nil {
		err = s.Publish.bufferErr
	}
	return err
}

// UnmarshalCaddyfile sets up the app from the global option block. Syntax:
//
//	push {
//		max_reserved_memory <size>
//		max_body_memory <size>
//		disable_metrics
//		store <backend> [<options...>]
//	}
//
// max_reserved_memory may also be written push_max_reserved_memory.
func (app *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if err := noArgs(d); err != nil {
		return err
	}
	return subdirectives(d, func(name string) error {
		switch name {
		case "max_reserved_memory":
			n, err := sizeArg(d)
			app.MaxReservedMemory = n
			return err
		case "max_body_memory":
			n, err := sizeArg(d)
			app.MaxBodyMemory = n
			return err
		case "disable_metrics":
			app.DisableMetrics = true
			return noArgs(d)
		case "store":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := strings.TrimSuffix(d.Val(), ";")
			unm, err := caddyfile.UnmarshalModule(d, "push.stores."+name)
			if err != nil {
				return err
			}
			app.StoreRaw = caddyconfig.JSONModuleObject(unm, "backend", name, nil)
			return nil
		}
		return d.Errf("unrecognized push option '%s'", d.Val())
	})
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		if err := json.Unmarshal(existing.(httpcaddyfile.App).Value, app); err != nil {
			return nil, d.Errf("merging push options: %v", err)
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "push", Value: caddyconfig.JSON(app, nil)}, nil
}

func parsePublisher(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	p := new(Publisher)
	err := p.UnmarshalCaddyfile(h.Dispenser)
	return p, err
}

func parseSubscriber(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Subscriber)
	err := s.UnmarshalCaddyfile(h.Dispenser)
	return s, err
}

func parsePubSub(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	s := new(Subscriber)
	err := s.unmarshalPubSub(h.Dispenser)
	return s, err
}

// lineArgs reads the rest of the current line's arguments. The `;` that
// ends an nginx line is dropped, whether it sticks to the last argument or
// stands alone, unless it was quoted: nginx lines paste in as they are,
// and `on;` means exactly `on`.
func lineArgs(d *caddyfile.Dispenser) []string {
	var args []string
	quoted := false
	for d.NextArg() {
		args = append(args, d.Val())
		quoted = d.Token().Quoted()
	}
	if n := len(args); n > 0 && !quoted {
		if args[n-1] == ";" {
			args = args[:n-1]
		} else {
			args[n-1] = strings.TrimSuffix(args[n-1], ";")
		}
	}
	return args
}

// optionName returns the current token as an option's name, without the
// `;` of an nginx line that has no arguments (`disable_metrics;`).
func optionName(d *caddyfile.Dispenser) string {
	if d.Token().Quoted() {
		return d.Val()
	}
	return strings.TrimSuffix(d.Val(), ";")
}

// oneArg reads exactly one argument on the current line.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	args := lineArgs(d)
	if len(args) != 1 {
		return "", d.ArgErr()
	}
	return args[0], nil
}

// noArgs checks that an option that is a flag has no argument.
func noArgs(d *caddyfile.Dispenser) error {
	if len(lineArgs(d)) > 0 {
		return d.ArgErr()
	}
	return nil
}

func intArg(d *caddyfile.Dispenser, minimum int) (int, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minimum {
		return 0, d.Errf("invalid number '%s' (want a whole number of at least %d)", v, minimum)
	}
	return n, nil
}

func onOffArg(d *caddyfile.Dispenser) (bool, error) {
	v, err := oneArg(d)
	if err != nil {
		return false, err
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("invalid value '%s' (want on or off)", v)
}

// durationArg reads a duration: Caddy's forms (2h, 90s, 1d) or nginx's bare
// seconds.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := parseDuration(v)
	if err != nil {
		return 0, d.Errf("invalid duration '%s': %v", v, err)
	}
	return caddy.Duration(dur), nil
}

func parseDuration(v string) (time.Duration, error) {
	var dur time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		dur = time.Duration(n) * time.Second
		if n > int64(1<<63-1)/int64(time.Second) {
			return 0, strconv.ErrRange
		}
	} else if dur, err = caddy.ParseDuration(v); err != nil {
		var nerr error
		if dur, nerr = parseNginxTime(v); nerr != nil {
			return 0, err // Caddy's message: it names the unit it did not know
		}
	}
	if dur < 0 {
		return 0, strconv.ErrRange
	}
	return dur, nil
}

// nginxUnits are nginx's time units (ngx_parse_time): M is 30 days and y
// 365, as nginx counts them. The longest unit that matches is read (1ms is
// a millisecond).
var nginxUnits = []struct {
	name string
	d    time.Duration
}{
	{"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour},
	{"d", 24 * time.Hour}, {"w", 7 * 24 * time.Hour}, {"M", 30 * 24 * time.Hour}, {"y", 365 * 24 * time.Hour},
}

// parseNginxTime reads a time as nginx writes one, whole numbers each with
// a unit, `1w`, `1y2M`, `1h30m`: the forms Caddy's parser does not take
// are nginx's w, M and y.
func parseNginxTime(v string) (time.Duration, error) {
	if v == "" {
		return 0, strconv.ErrSyntax
	}
	var total time.Duration
	for v != "" {
		i := 0
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		n, err := strconv.ParseInt(v[:i], 10, 64)
		if err != nil {
			return 0, strconv.ErrSyntax
		}
		v = v[i:]
		unit := -1
		for j, u := range nginxUnits {
			if strings.HasPrefix(v, u.name) && (unit < 0 || len(u.name) > len(nginxUnits[unit].name)) {
				unit = j
			}
		}
		if unit < 0 {
			return 0, strconv.ErrSyntax
		}
		u := nginxUnits[unit]
		if n > (1<<63-1-int64(total))/int64(u.d) {
			return 0, strconv.ErrRange
		}
		total += time.Duration(n) * u.d
		v = v[len(u.name):]
	}
	return total, nil
}

func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := parseSize(v)
	if err != nil {
		return 0, d.Errf("invalid size '%s' (want e.g. 10M, 512k, 10MiB or 10MB)", v)
	}
	return n, nil
}

// maxSize is the largest byte size a setting takes (4 EiB): a size plus
// one must not overflow.
const maxSize = 1 << 62

// parseSize reads a byte size: nginx's forms (a number with an optional k,
// m or g suffix, binary units) or Caddy's (10MiB, 10MB, 1.5GB).
func parseSize(v string) (int64, error) {
	shift := 0
	num := v
	if n := len(v); n > 1 {
		switch v[n-1] {
		case 'k', 'K':
			shift, num = 10, v[:n-1]
		case 'm', 'M':
			shift, num = 20, v[:n-1]
		case 'g', 'G':
			shift, num = 30, v[:n-1]
		}
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil && !strings.HasPrefix(num, "+") {
		if n < 0 || n > maxSize>>shift {
			return 0, strconv.ErrRange
		}
		return n << shift, nil
	}
	if f, err := strconv.ParseFloat(num, 64); shift > 0 && err == nil && !strings.HasPrefix(num, "+") {
		// 1.5M is binary too, as 1M is (humanize would read it as 1.5 MB)
		v := f * float64(int64(1)<<shift)
		if !(v >= 0 && v <= maxSize) { // NaN and Inf too
			return 0, strconv.ErrRange
		}
		if v != math.Trunc(v) { // 0.1k: a fraction of a byte
			return 0, strconv.ErrSyntax
		}
		return int64(v), nil
	}
	// humanize reads a comma as a thousands separator (1,5M is 15 MB to
	// it) and drops a fraction of a byte (1.5 is 1, 0.5 is 0: the default;
	// 1.0001KB is 1000)
	if strings.Contains(v, ",") {
		return 0, strconv.ErrSyntax
	}
	u, err := humanize.ParseBytes(v)
	if err != nil || u > maxSize {
		return 0, strconv.ErrSyntax
	}
	num = strings.TrimSpace(v)
	end := 0
	for end < len(num) && (num[end] >= '0' && num[end] <= '9' || num[end] == '.') {
		end++
	}
	f, ferr := strconv.ParseFloat(num[:end], 64)
	unit, uerr := humanize.ParseBytes("1" + num[end:])
	if ferr != nil || uerr != nil || f*float64(unit) != math.Trunc(f*float64(unit)) {
		return 0, strconv.ErrSyntax
	}
	return int64(u), nil
}

// nginxVariable matches an nginx variable in a channel_id: $name or
// ${name}, a name that starts with a letter or an underscore (a `$`
// before a digit, as in price$5, stays text).
var nginxVariable = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))`)

// nginxVariables rewrites the nginx variables an nginx user may paste into
// channel_id, wherever they are in it ($arg_NAME, $http_NAME,
// $cookie_NAME: room_$arg_id is room_{http.request.uri.query.id}), to
// Caddy placeholders. Any other nginx variable ($uri, $host, ...) is an
// error: kept as text it would make one channel of every request.
func nginxVariables(v string) (string, error) {
	var bad string
	out := nginxVariable.ReplaceAllStringFunc(v, func(m string) string {
		sub := nginxVariable.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		switch {
		case strings.HasPrefix(name, "arg_") && len(name) > 4:
			return "{http.request.uri.query." + name[4:] + "}"
		case strings.HasPrefix(name, "http_") && len(name) > 5:
			return "{http.request.header." + strings.ReplaceAll(name[5:], "_", "-") + "}"
		case strings.HasPrefix(name, "cookie_") && len(name) > 7:
			return "{http.request.cookie." + name[7:] + "}"
		}
		if bad == "" {
			bad = m
		}
		return m
	})
	if bad != "" {
		return "", fmt.Errorf("channel_id: the nginx variable %s has no equivalent here; "+
			"use $arg_NAME, $http_NAME, $cookie_NAME or a Caddy placeholder ({query.NAME}, {header.NAME}, {path.N}, ...)", bad)
	}
	return out, nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Publisher)(nil)
	_ caddyfile.Unmarshaler = (*Subscriber)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
)

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	store memory
func (MemoryBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	if err := noArgs(d); err != nil {
		return err
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("the memory store takes no options")
	}
	return nil
}

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	store redis [<address...>] {
//		address       <host:port|redis://...|rediss://...>...
//		sentinel      <master-name>
//		username      <name>
//		password      <password>
//		sentinel_password <password>
//		db            <number>
//		tls
//		tls_ca        <pem-file>
//		key_prefix    <prefix>
//		dial_timeout  <duration>
//		read_timeout  <duration>
//		write_timeout <duration>
//		pool_size     <connections>
//	}
func (b *RedisBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	b.Addresses = append(b.Addresses, lineArgs(d)...)
	return blockOptions(d, "duplicate option '%s'", func() (string, error) { return optionName(d), nil }, func(opt string) error {
		var err error
		switch opt {
		case "address":
			args := lineArgs(d)
			if len(args) == 0 {
				return d.ArgErr()
			}
			b.Addresses = append(b.Addresses, args...)
		case "sentinel":
			b.Sentinel, err = oneArg(d)
		case "username":
			b.Username, err = oneArg(d)
		case "password":
			b.Password, err = oneArg(d)
		case "sentinel_password":
			b.SentinelPassword, err = oneArg(d)
		case "db":
			b.DB, err = intArg(d, 0)
		case "tls":
			err = noArgs(d)
			b.TLS = true
		case "tls_ca":
			b.TLSCA, err = oneArg(d)
		case "key_prefix":
			if b.KeyPrefix, err = oneArg(d); err == nil && strings.ContainsAny(b.KeyPrefix, "{}") {
				return d.Errf("key_prefix '%s' must not contain { or } (they mark Redis Cluster hash tags)", b.KeyPrefix)
			}
		case "dial_timeout":
			b.DialTimeout, err = durationArg(d)
		case "read_timeout":
			b.ReadTimeout, err = durationArg(d)
		case "write_timeout":
			b.WriteTimeout, err = durationArg(d)
		case "pool_size":
			b.PoolSize, err = intArg(d, 0)
		default:
			return d.Errf("unknown redis store option '%s'", opt)
		}
		return err
	}, "address")
}
