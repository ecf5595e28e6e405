package caddypush

import (
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// Defaults shared by both handlers.
const (
	DefaultChannelID          = "{http.request.uri.query.id}"
	DefaultMaxChannelIDLength = 1024
	DefaultAllowOrigin        = "*"
)

// ChannelConfig holds the settings both handlers share: which channel a
// request addresses and the CORS origin. Its fields appear inline in the
// JSON of push_publisher and push_subscriber.
type ChannelConfig struct {
	// ChannelID is a placeholder expression giving the channel id of a
	// request. Equivalent to nginx `set $push_channel_id $arg_id`.
	// Default: `{http.request.uri.query.id}` (Caddyfile: `{query.id}`).
	ChannelID string `json:"channel_id,omitempty"`

	// ChannelIDs, for a subscriber on several channels at once, are up to
	// 7 placeholder expressions, one channel each (ChannelID is then
	// unused). Its messages come in publication order, with compound ids.
	// Equivalent to nchan_channel_id with several values. Default: none.
	ChannelIDs []string `json:"channel_ids,omitempty"`

	// ChannelIDSplitDelimiter splits each channel id into several (a
	// trailing delimiter is dropped), up to 255 channels in all; more get
	// 403. Equivalent to nchan_channel_id_split_delimiter. Default: none.
	ChannelIDSplitDelimiter string `json:"channel_id_split_delimiter,omitempty"`

	// ChannelGroup is a namespace: the channel key is group + "/" + id, so
	// a publisher and a subscriber meet only when they use the same group.
	// It must not contain "/". Equivalent to nginx push_channel_group.
	// Default: empty.
	ChannelGroup string `json:"channel_group,omitempty"`

	// MaxChannelIDLength is the longest accepted channel id, in bytes;
	// longer ids are refused with 403 (nginx truncated them silently).
	// Equivalent to nginx push_max_channel_id_length. Default: 1024.
	MaxChannelIDLength int `json:"max_channel_id_length,omitempty"`

	// AllowOrigin is the value of Access-Control-Allow-Origin on OPTIONS
	// answers and on responses. Default: `*`.
	AllowOrigin string `json:"allow_origin,omitempty"`

	// AllowCredentials lets a page on another origin subscribe or publish
	// with its cookies (an EventSource or fetch with credentials): answers
	// say Access-Control-Allow-Credentials: true and name the request's
	// Origin in Access-Control-Allow-Origin when allow_origin is `*` or
	// that origin, as browsers require. With allow_origin `*` that is any
	// site, so name your site in allow_origin. Equivalent to nchan's
	// nchan_access_control_allow_credentials (on by default there).
	// Default: off.
	AllowCredentials bool `json:"allow_credentials,omitempty"`

	// queryKey is NAME when ChannelID is exactly {http.request.uri.query.NAME}:
	// then the id is read from the raw query without building the replacer's
	// map of every parameter.
	queryKey string

	// queryNames are the query parameters the channel id expressions
	// read: a request that repeats one is refused (Caddy's placeholder
	// joins the values with ",", where an auth service, nginx's $arg_ and
	// most parsers read the first).
	queryNames []string
}

// queryPlaceholder matches a query placeholder in a channel id expression.
var queryPlaceholder = regexp.MustCompile(`\{(?:http\.request\.uri\.)?query\.([^{}]+)\}`)

// repeatedQuery reports whether r's query holds one of the channel id
// expressions' parameters more than once, and answers 400 if so.
func (cc *ChannelConfig) repeatedQuery(w http.ResponseWriter, r *http.Request) bool {
	for _, name := range cc.queryNames {
		n := 0
		for range queryValues(r.URL.RawQuery, name) {
			if n++; n > 1 {
				refuseRepeated(w, name)
				return true
			}
		}
	}
	return false
}

func refuseRepeated(w http.ResponseWriter, name string) {
	writeText(w, http.StatusBadRequest, "The channel id argument "+name+" is repeated.")
}

func (cc *ChannelConfig) setDefaults() {
	if cc.ChannelID == "" {
		cc.ChannelID = DefaultChannelID
	}
	if cc.MaxChannelIDLength == 0 {
		cc.MaxChannelIDLength = DefaultMaxChannelIDLength
	}
	if cc.AllowOrigin == "" {
		cc.AllowOrigin = DefaultAllowOrigin
	}
	if name, ok := queryExpr(cc.ChannelID); ok {
		cc.queryKey = name
	}
	cc.queryNames = nil
	for _, e := range append([]string{cc.ChannelID}, cc.ChannelIDs...) {
		for _, m := range queryPlaceholder.FindAllStringSubmatch(e, -1) {
			if !slices.Contains(cc.queryNames, m[1]) {
				cc.queryNames = append(cc.queryNames, m[1])
			}
		}
	}
}

// queryParam returns the values of key in a raw query joined with ",", as
// Caddy's {http.request.uri.query.*} placeholder does.
func queryParam(raw, key string) string {
	var out string
	found := false
	for v := range queryValues(raw, key) {
		if found {
			out += "," + v
		} else {
			out, found = v, true
		}
	}
	return out
}

// queryValues yields the values of key in a raw query, decoded, with
// url.Query's semantics: pairs with a semicolon or a bad escape are
// skipped.
func queryValues(raw, key string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for raw != "" {
			var pair string
			pair, raw, _ = strings.Cut(raw, "&")
			if pair == "" || strings.Contains(pair, ";") {
				continue
			}
			k, v, _ := strings.Cut(pair, "=")
			if strings.ContainsAny(k, "%+") {
				var err error
				if k, err = url.QueryUnescape(k); err != nil {
					continue
				}
			}
			if k != key {
				continue
			}
			v, err := url.QueryUnescape(v)
			if err != nil {
				continue
			}
			if !yield(v) {
				return
			}
		}
	}
}

// Limits of a multiplexed subscriber, as nchan's.
const (
	maxChannelIDs     = 7   // channel_id expressions
	maxChannelsPerSub = 255 // channels after splitting
)

// multiplexed reports whether a request may name several channels.
func (cc *ChannelConfig) multiplexed() bool {
	return len(cc.ChannelIDs) > 0 || cc.ChannelIDSplitDelimiter != ""
}

// channelKeys resolves a multiplexed request's channel ids and returns the
// store keys, or writes the refusal (404 for a missing or empty id, 403
// for one too long or too many channels) and returns ok=false.
func (cc *ChannelConfig) channelKeys(w http.ResponseWriter, r *http.Request) (keys []string, ok bool) {
	if cc.repeatedQuery(w, r) {
		return nil, false
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	exprs := cc.ChannelIDs
	if len(exprs) == 0 {
		exprs = []string{cc.ChannelID}
	}
	var ids []string
	for _, e := range exprs {
		var id string
		if name, isQuery := queryExpr(e); isQuery {
			id = queryParam(r.URL.RawQuery, name)
		} else {
			id = repl.ReplaceAll(e, "")
		}
		if cc.ChannelIDSplitDelimiter == "" {
			ids = append(ids, id)
			continue
		}
		// At most one more part than there is room for is split off (the
		// last holds the rest), so a list too long costs no string per
		// channel before it is refused.
		room := maxChannelsPerSub - len(ids)
		parts := strings.SplitN(id, cc.ChannelIDSplitDelimiter, room+2)
		if len(parts) > 1 && parts[len(parts)-1] == "" {
			parts = parts[:len(parts)-1] // as nchan: a trailing delimiter is dropped
		}
		if len(parts) > room {
			return nil, tooManyChannels(w)
		}
		ids = append(ids, parts...)
	}
	if len(ids) > maxChannelsPerSub {
		return nil, tooManyChannels(w)
	}
	keys = make([]string, len(ids))
	for i, id := range ids {
		switch {
		case id == "":
			writeText(w, http.StatusNotFound, "No channel id provided.")
			return nil, false
		case len(id) > cc.MaxChannelIDLength:
			writeText(w, http.StatusForbidden, "Channel id is longer than max_channel_id_length ("+
				strconv.Itoa(cc.MaxChannelIDLength)+" bytes).")
			return nil, false
		}
		keys[i] = cc.ChannelGroup + "/" + id
	}
	repl.Set("http.push.channel_id", strings.Join(ids, ","))
	return keys, true
}

// tooManyChannels refuses a subscriber on more than maxChannelsPerSub
// channels.
func tooManyChannels(w http.ResponseWriter) bool {
	writeText(w, http.StatusForbidden, "Too many channels: at most "+strconv.Itoa(maxChannelsPerSub)+".")
	return false
}

// queryExpr reports whether a channel id expression is exactly
// {http.request.uri.query.NAME} (or {query.NAME}), and NAME.
func queryExpr(e string) (string, bool) {
	if m := queryPlaceholder.FindStringSubmatch(e); m != nil && m[0] == e {
		return m[1], true
	}
	return "", false
}

func (cc *ChannelConfig) validate() error {
	if len(cc.ChannelIDs) > maxChannelIDs {
		return fmt.Errorf("at most %d channel_id values, got %d", maxChannelIDs, len(cc.ChannelIDs))
	}
	if strings.Contains(cc.ChannelGroup, "/") {
		return fmt.Errorf("channel_group %q must not contain '/'", cc.ChannelGroup)
	}
	if cc.MaxChannelIDLength < 0 {
		return fmt.Errorf("max_channel_id_length must not be negative, got %d", cc.MaxChannelIDLength)
	}
	return nil
}

// channelKey resolves the request's channel id and returns the store key,
// or writes the protocol's refusal (404 no id, 403 too long) and returns
// ok=false.
func (cc *ChannelConfig) channelKey(w http.ResponseWriter, r *http.Request) (id, key string, ok bool) {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if cc.queryKey != "" {
		// The id is the one argument, read in one pass that also finds it
		// repeated (repeatedQuery's refusal).
		n := 0
		for v := range queryValues(r.URL.RawQuery, cc.queryKey) {
			if n++; n == 1 {
				id = v
			}
		}
		if n > 1 {
			refuseRepeated(w, cc.queryKey)
			return "", "", false
		}
	} else {
		if cc.repeatedQuery(w, r) {
			return "", "", false
		}
		id = repl.ReplaceAll(cc.ChannelID, "")
	}
	switch {
	case id == "":
		writeText(w, http.StatusNotFound, "No channel id provided.")
		return "", "", false
	case len(id) > cc.MaxChannelIDLength:
		writeText(w, http.StatusForbidden, "Channel id is longer than max_channel_id_length ("+
			strconv.Itoa(cc.MaxChannelIDLength)+" bytes).")
		return "", "", false
	}
	repl.Set("http.push.channel_id", id)
	return id, cc.ChannelGroup + "/" + id, true
}

// allowOrigin is the Access-Control-Allow-Origin of an answer to r.
func (cc *ChannelConfig) allowOrigin(r *http.Request) string {
	if cc.AllowCredentials {
		if o := r.Header.Get("Origin"); o != "" && (cc.AllowOrigin == "*" || o == cc.AllowOrigin) {
			return o
		}
	}
	return cc.AllowOrigin
}

// setCORS sets the CORS headers of an answer to r (not a preflight).
func (cc *ChannelConfig) setCORS(h http.Header, r *http.Request) {
	h.Set("Access-Control-Allow-Origin", cc.allowOrigin(r))
	cc.setCredentials(h)
}

// setCredentials adds what allow_credentials adds to an answer.
func (cc *ChannelConfig) setCredentials(h http.Header) {
	if cc.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Add("Vary", "Origin")
	}
}

// writeCORS answers an OPTIONS request.
func (cc *ChannelConfig) writeCORS(w http.ResponseWriter, r *http.Request, allowHeaders, allowMethods string) {
	h := w.Header()
	cc.setCORS(h, r)
	h.Set("Access-Control-Allow-Headers", allowHeaders)
	h.Set("Access-Control-Allow-Methods", allowMethods)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}
