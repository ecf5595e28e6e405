package caddypush

import (
	"fmt"
	"net/http"
	"net/url"
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

	// queryKey is NAME when ChannelID is exactly {http.request.uri.query.NAME}:
	// then the id is read from the raw query without building the replacer's
	// map of every parameter.
	queryKey string
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
	if name, ok := strings.CutPrefix(cc.ChannelID, "{http.request.uri.query."); ok {
		if name, ok = strings.CutSuffix(name, "}"); ok && !strings.ContainsAny(name, "{}") {
			cc.queryKey = name
		}
	}
}

// queryParam returns the values of key in a raw query joined with ",", as
// Caddy's {http.request.uri.query.*} placeholder does (url.Query semantics:
// pairs with a semicolon or a bad escape are skipped).
func queryParam(raw, key string) string {
	var out string
	found := false
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
		if found {
			out += "," + v
		} else {
			out, found = v, true
		}
	}
	return out
}

func (cc *ChannelConfig) validate() error {
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
		id = queryParam(r.URL.RawQuery, cc.queryKey)
	} else {
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

// writeCORS answers an OPTIONS request.
func (cc *ChannelConfig) writeCORS(w http.ResponseWriter, allowHeaders, allowMethods string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", cc.AllowOrigin)
	h.Set("Access-Control-Allow-Headers", allowHeaders)
	h.Set("Access-Control-Allow-Methods", allowMethods)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}
