package caddypush

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds message ids as subscribers send them back: a request's
// cursor from any of the places nchan reads one, and the compound ids of a
// subscriber on several channels.
//
// A compound id is nchan's: one time, then one tag per channel in the
// order of the subscriber's channel ids, the tag of the channel the last
// message came from in brackets: `T:0,[1],-`. A tag is the last one
// received from that channel in second T; `-` means none in second T,
// which on resume means "from the start of second T" for that channel.

// errBadID is an id that cannot be read; it is answered 400 with nchan's
// body, badIDText.
var errBadID = errors.New("message id invalid")

// badIDText is nchan's answer to an id it cannot read.
const badIDText = "Message ID invalid"

// beforeSecond is the cursor of a channel whose tag in a compound id is
// `-`: after everything of the second before T.
func beforeSecond(t int64) pushstore.MessageID {
	return pushstore.MessageID{Time: t - 1, Tag: 1 << 40}
}

// runningID is a subscriber's position on its channels: the time of the
// last message it was sent and, per channel, the last tag received in that
// second (-1: none).
type runningID struct {
	time   int64
	tags   []int64
	active int // the channel of the last message
}

func newRunningID(channels int) *runningID {
	r := &runningID{tags: make([]int64, channels)}
	for i := range r.tags {
		r.tags[i] = -1
	}
	return r
}

// advance records a message of channel i.
func (r *runningID) advance(i int, id pushstore.MessageID) {
	if id.Time != r.time {
		for j := range r.tags {
			r.tags[j] = -1
		}
		r.time = id.Time
	}
	r.tags[i], r.active = id.Tag, i
}

// appendTags appends the tag list, `0,[1],-`; for one channel, the tag
// alone, as a one-channel location writes it (a client echoes it back in
// If-None-Match, where one channel's cursor is read as a plain tag).
func (r *runningID) appendTags(b []byte) []byte {
	for i, t := range r.tags {
		if i > 0 {
			b = append(b, ',')
		}
		if i == r.active && len(r.tags) > 1 {
			b = append(b, '[')
		}
		if t < 0 {
			b = append(b, '-')
		} else {
			b = strconv.AppendInt(b, t, 10)
		}
		if i == r.active && len(r.tags) > 1 {
			b = append(b, ']')
		}
	}
	return b
}

// appendID appends the whole id, `T:0,[1],-`.
func (r *runningID) appendID(b []byte) []byte {
	b = strconv.AppendInt(b, r.time, 10)
	return r.appendTags(append(b, ':'))
}

// parseID reads an id for n channels, `T:tag` (one channel) or a compound
// one, into a cursor per channel, as nchan 1.3.6 reads a stream's resume
// id: one without a `:` (`undefined`, `null`, a bare time) is no id at all
// (nil, nil), and a time that is not a number is refused (errBadID); the
// tags are read by parseTags.
func parseID(v string, n int) ([]pushstore.MessageID, error) {
	ts, tags, ok := strings.Cut(v, ":")
	if !ok {
		return nil, nil
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || t < 0 {
		return nil, errBadID
	}
	return parseTags(t, tags, n)
}

// parseTags reads a tag list for n channels at time t. Fewer tags than
// channels is allowed (the others are `-`), as in nchan; more is not, and
// neither is a second bracketed tag. A list that cannot be read is refused
// (errBadID) for several channels and is tag 0 for one, as in nchan (an
// empty list too: If-Modified-Since without If-None-Match).
func parseTags(t int64, tags string, n int) ([]pushstore.MessageID, error) {
	bad := func() ([]pushstore.MessageID, error) {
		if n == 1 {
			return []pushstore.MessageID{{Time: t}}, nil
		}
		return nil, errBadID
	}
	cursors := make([]pushstore.MessageID, n)
	brackets := 0
	i := 0
	for part := range strings.SplitSeq(tags, ",") {
		if i >= n {
			return bad()
		}
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, "[") && strings.HasSuffix(part, "]") {
			brackets++
			part = part[1 : len(part)-1]
		}
		switch tag, err := strconv.ParseInt(part, 10, 64); {
		case part == "-" || part == "-1":
			cursors[i] = beforeSecond(t)
		case err != nil || tag < 0:
			return bad()
		default:
			cursors[i] = pushstore.MessageID{Time: t, Tag: tag}
		}
		i++
	}
	if brackets > 1 || (n > 1 && i > 1 && brackets == 0) {
		return bad()
	}
	for ; i < n; i++ {
		cursors[i] = beforeSecond(t)
	}
	return cursors, nil
}

// streamCursor reads a streaming or multiplexed request's cursor for n
// channels from, in nchan's order: If-Modified-Since with If-None-Match
// (the time, and the tag or tag list), an If-None-Match that holds a whole
// `time:tags` id, the Last-Event-ID header, and the last_event_id query
// argument, each as parseID says. It returns nil, nil when the request
// has none.
func streamCursor(r *http.Request, n int) ([]pushstore.MessageID, error) {
	h := r.Header
	if ims := h.Get("If-Modified-Since"); ims != "" {
		t, err := http.ParseTime(ims)
		if err != nil {
			return nil, errBadID
		}
		return parseTags(t.Unix(), trimEtag(h.Get("If-None-Match")), n)
	}
	if inm := h.Get("If-None-Match"); strings.Contains(inm, ":") {
		return parseID(trimEtag(inm), n)
	}
	if id := h.Get("Last-Event-ID"); id != "" {
		if strings.Contains(id, "%") { // nchan URL-decodes it, as the query argument
			if u, err := url.PathUnescape(id); err == nil {
				id = u
			}
		}
		if c, err := parseID(id, n); c != nil || err != nil {
			return c, err
		}
	}
	// The first last_event_id, as nginx's $arg_last_event_id, which nchan
	// reads: NchanSubscriber.js appends its own to a URL that held one.
	for id := range queryValues(r.URL.RawQuery, "last_event_id") {
		if id == "" {
			break
		}
		return parseID(id, n)
	}
	return nil, nil
}

// trimEtag removes what a client or Caddy's encode may have added around
// an Etag it echoes: quotes, W/, and a `-gzip` kind of suffix.
func trimEtag(s string) string {
	s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), "W/"))
	s = strings.Trim(s, `"`)
	if i := strings.LastIndex(s, "-"); i > 0 && i < len(s)-1 && isCoding(s[i+1:]) && s[i-1] != ',' {
		s = s[:i]
	}
	return s
}

func isCoding(s string) bool {
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// header is the compound id as a poll's Last-Modified (the time) and Etag
// (the tag list).
func (ids *runningID) header() (lastModifiedValue, etag string) {
	return lastModified(pushstore.MessageID{Time: ids.time}), string(ids.appendTags(nil))
}
