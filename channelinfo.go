package caddypush

import (
	"net/http"
	"strconv"
	"strings"
)

// infoFormat is a channel info representation (PROTOCOL.md 3.1).
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
func appendInfo(dst []byte, f infoFormat, i ChannelInfo) []byte {
	t := &infoTexts[f]
	dst = strconv.AppendInt(append(dst, t[0]...), int64(i.Messages), 10)
	dst = strconv.AppendInt(append(dst, t[1]...), i.Requested, 10)
	dst = strconv.AppendInt(append(dst, t[2]...), int64(i.Subscribers), 10)
	return append(dst, t[3]...)
}

// writeInfo answers with channel info in the format the request accepts.
func writeInfo(w http.ResponseWriter, r *http.Request, status int, info ChannelInfo) {
	f, media := negotiateInfo(r.Header.Get("Accept"))
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
