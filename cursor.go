package caddypush

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds how a message id travels in HTTP headers: its time as
// Last-Modified / If-Modified-Since and its tag as Etag / If-None-Match.

// lastModified formats an id's time as an HTTP-date.
func lastModified(id pushstore.MessageID) string {
	return time.Unix(id.Time, 0).UTC().Format(http.TimeFormat)
}

// etag formats an id's tag as the original module did: a bare decimal.
func etag(id pushstore.MessageID) string {
	return strconv.FormatInt(id.Tag, 10)
}

// ParseCursor turns a request's If-Modified-Since and If-None-Match values
// into the message id the client last received. It never fails: an
// unparseable If-Modified-Since means time 0 and an unrecognised
// If-None-Match means tag 0 (docs/protocol.md, "Message ids").
func ParseCursor(ifModifiedSince, ifNoneMatch string) pushstore.MessageID {
	var id pushstore.MessageID
	if ifModifiedSince != "" {
		if t, err := http.ParseTime(ifModifiedSince); err == nil {
			id.Time = t.Unix()
		}
	}
	id.Tag = parseTag(ifNoneMatch)
	return id
}

// parseTag reads an If-None-Match value leniently. Accepted shapes, all
// meaning tag N: `N`, `"N"`, `W/"N"`, and the forms Caddy's encode
// middleware produces from a bare `N` (`N-gzip"` on the way out, `N"` after
// it strips its suffix from the echoed header on the way back in). Anything
// else is 0.
func parseTag(s string) int64 {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.TrimPrefix(s, `"`)
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	if end == 0 || end > 18 {
		return 0
	}
	if !validTagSuffix(s[end:]) {
		return 0
	}
	n, err := strconv.ParseInt(s[:end], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// validTagSuffix accepts what may follow the digits of a tag: nothing, a
// closing quote, or a content-coding suffix such as `-gzip` with an optional
// closing quote.
func validTagSuffix(rest string) bool {
	rest = strings.TrimSuffix(rest, `"`)
	if rest == "" {
		return true
	}
	if rest[0] != '-' || len(rest) == 1 {
		return false
	}
	for _, c := range rest[1:] {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
