package caddypush

import (
	"io"
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

// formatInfo renders channel info in format f.
func formatInfo(f infoFormat, i ChannelInfo) string {
	n, s, k := strconv.Itoa(i.Messages), strconv.FormatInt(i.Requested, 10), strconv.Itoa(i.Subscribers)
	switch f {
	case infoJSON:
		return `{"messages": ` + n + `, "requested": ` + s + `, "subscribers": ` + k + `}`
	case infoXML:
		return "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<channel>\n  <messages>" + n +
			"</messages>\n  <requested>" + s + "</requested>\n  <subscribers>" + k + "</subscribers>\n</channel>\n"
	case infoYAML:
		return "---\nmessages: " + n + "\nrequested: " + s + "\nsubscribers: " + k + "\n"
	}
	return "queued messages: " + n + "\r\nlast requested: " + s +
		" sec. ago (-1=never)\r\nactive subscribers: " + k + "\r\n"
}

// writeInfo answers with channel info in the format the request accepts.
func writeInfo(w http.ResponseWriter, r *http.Request, status int, info ChannelInfo) {
	f, media := negotiateInfo(r.Header.Get("Accept"))
	body := formatInfo(f, info)
	h := w.Header()
	h.Set("Content-Type", media)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
