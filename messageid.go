package caddypush

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MessageID identifies a message within its channel: the publication time in
// whole seconds (UTC) and a tag that orders messages published in the same
// second. On the wire the time travels as Last-Modified / If-Modified-Since
// and the tag as Etag / If-None-Match.
type MessageID struct {
	Time int64 // Unix seconds
	Tag  int64
}

// After reports whether id is later than other (time first, then tag).
func (id MessageID) After(other MessageID) bool {
	if id.Time != other.Time {
		return id.Time > other.Time
	}
	return id.Tag > other.Tag
}

// String formats the id as nchan does, "time:tag".
func (id MessageID) String() string {
	return strconv.FormatInt(id.Time, 10) + ":" + strconv.FormatInt(id.Tag, 10)
}

// LastModified formats the time part as an HTTP-date.
func (id MessageID) LastModified() string {
	return time.Unix(id.Time, 0).UTC().Format(http.TimeFormat)
}

// Etag formats the tag part as the original module did: a bare decimal.
func (id MessageID) Etag() string {
	return strconv.FormatInt(id.Tag, 10)
}

// ParseCursor turns a request's If-Modified-Since and If-None-Match values
// into the message id the client last received. It never fails: an
// unparseable If-Modified-Since means time 0 and an unrecognised
// If-None-Match means tag 0 (PROTOCOL.md section 2).
func ParseCursor(ifModifiedSince, ifNoneMatch string) MessageID {
	var id MessageID
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
