package caddypush

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the answers both handlers (and the admin API) write:
// refusals with their status and reason, headers-only answers, and
// channel info in the format the request accepts.

// writeText writes a protocol answer that carries a reason: a short
// text/plain body (docs/protocol.md, "Errors").
func writeText(w http.ResponseWriter, status int, msg string) {
	countRefusal(status)
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// writeEmpty writes a headers-only answer (404 on the publisher, 405, 409,
// 410).
func writeEmpty(w http.ResponseWriter, status int) {
	countRefusal(status)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

// storeRefusal writes the answer to a store error that refuses a request.
func storeRefusal(w http.ResponseWriter, err error) error {
	status, msg := refusal(err)
	switch {
	case status == http.StatusInternalServerError:
		return caddyhttp.Error(status, err)
	case msg == "":
		writeEmpty(w, status)
	default:
		writeText(w, status, msg)
	}
	return nil
}

// refusalStatus is the status storeRefusal answers err with.
func refusalStatus(err error) int {
	status, _ := refusal(err)
	return status
}

// refusal maps a store error to its status and text body ("" for none).
func refusal(err error) (int, string) {
	var down *pushstore.UnavailableError
	switch {
	case errors.Is(err, pushstore.ErrInsufficientStorage):
		return http.StatusInsufficientStorage, "Insufficient storage: the channel store is full (max_reserved_memory)."
	case errors.Is(err, pushstore.ErrChannelNotFound):
		return http.StatusForbidden, "Channel does not exist and authorized_channels_only is on."
	case errors.Is(err, pushstore.ErrTooManySubscribers):
		return http.StatusForbidden, "Channel already has max_channel_subscribers waiting subscribers."
	case errors.Is(err, pushstore.ErrConflict):
		return http.StatusConflict, ""
	case errors.As(err, &down):
		return http.StatusServiceUnavailable, "Service unavailable: the " + down.Backend + " channel store cannot be reached."
	}
	return http.StatusInternalServerError, ""
}

// missingRefusal answers a publisher request for a channel that does not
// exist with 404, and other store errors as storeRefusal does.
func missingRefusal(w http.ResponseWriter, err error) error {
	if errors.Is(err, pushstore.ErrChannelNotFound) {
		writeEmpty(w, http.StatusNotFound)
		return nil
	}
	return storeRefusal(w, err)
}

// infoFormat is a channel info representation (docs/protocol.md, "Channel info").
type infoFormat uint8

const (
	infoPlain infoFormat = iota
	infoJSON
	infoXML
	infoYAML
)

var infoFormats = map[string]infoFormat{
	"text/plain":         infoPlain,
	"application/json":   infoJSON,
	"text/json":          infoJSON,
	"application/x-json": infoJSON,
	"text/x-json":        infoJSON,
	"application/xml":    infoXML,
	"text/xml":           infoXML,
	"application/yaml":   infoYAML,
	"text/yaml":          infoYAML,
	"application/x-yaml": infoYAML,
	"text/x-yaml":        infoYAML,
}

// negotiateInfo picks the format of the media type that appears earliest in
// the Accept header; q-values are ignored, wildcards are not a choice, and
// when nothing is recognised the answer is text/plain.
func negotiateInfo(accept string) (infoFormat, string) {
	for accept != "" {
		var part string
		part, accept, _ = strings.Cut(accept, ",")
		media, _, _ := strings.Cut(part, ";")
		media = strings.ToLower(strings.TrimSpace(media))
		if f, ok := infoFormats[media]; ok {
			return f, media
		}
	}
	return infoPlain, "text/plain"
}

// infoTexts holds each format's text around its three numbers (messages,
// seconds since last requested, subscribers).
var infoTexts = [...][4]string{
	infoPlain: {"queued messages: ", "\r\nlast requested: ", " sec. ago (-1=never)\r\nactive subscribers: ", "\r\n"},
	infoJSON:  {`{"messages": `, `, "requested": `, `, "subscribers": `, `}`},
	infoXML: {"<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<channel>\n  <messages>",
		"</messages>\n  <requested>", "</requested>\n  <subscribers>", "</subscribers>\n</channel>\n"},
	infoYAML: {"---\nmessages: ", "\nrequested: ", "\nsubscribers: ", "\n"},
}

// appendInfo appends channel info in format f to dst.
func appendInfo(dst []byte, f infoFormat, i pushstore.ChannelInfo) []byte {
	t := &infoTexts[f]
	dst = strconv.AppendInt(append(dst, t[0]...), int64(i.Messages), 10)
	dst = strconv.AppendInt(append(dst, t[1]...), i.Requested, 10)
	dst = strconv.AppendInt(append(dst, t[2]...), int64(i.Subscribers), 10)
	return append(dst, t[3]...)
}

// headerList is a list-valued header of h (name in canonical form), its
// lines as one list (RFC 9110, 5.3): Accept, TE and Connection may come on
// several lines.
func headerList(h http.Header, name string) string {
	if a := h[name]; len(a) > 1 {
		return strings.Join(a, ",")
	}
	return h.Get(name)
}

// acceptOf is r's Accept, its lines as one list.
func acceptOf(r *http.Request) string { return headerList(r.Header, "Accept") }

// writeInfo answers with channel info in the format the request accepts.
func writeInfo(w http.ResponseWriter, r *http.Request, status int, info pushstore.ChannelInfo) {
	f, media := negotiateInfo(acceptOf(r))
	body := appendInfo(make([]byte, 0, 128), f, info)
	// One backing array for this response's header values: middleware such
	// as `header` may rewrite a value in place, so none may be shared.
	v := [...]string{media, strconv.Itoa(len(body))}
	h := w.Header()
	h["Content-Type"] = v[0:1:1]
	h["Content-Length"] = v[1:2:2]
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
