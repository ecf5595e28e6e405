package caddypush

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds what every streaming transport shares: the loop that
// sends a subscription's deliveries as they are queued, its keep-alives and
// timeout, and how a stream ends.

// streamWriter is one transport's framing of a stream.
type streamWriter interface {
	// message writes one message; ids is the subscriber's compound id
	// (already advanced to this message) when it follows several
	// channels, nil when it follows one.
	message(m *pushstore.Message, ids *runningID) error
	// ping writes a keep-alive, if the transport has one.
	ping() error
	// end writes the last bytes, naming why the stream ends.
	end(why streamEnd) error
	// flush sends what was written.
	flush() error
}

// streamEnd is why a stream ends, as an HTTP status and a reason.
type streamEnd struct {
	status int
	reason string
}

// The ways a stream ends.
var (
	endDeleted   = streamEnd{http.StatusGone, "Gone"}
	endTimeout   = streamEnd{http.StatusRequestTimeout, "Request Timeout"}
	endDisplaced = streamEnd{http.StatusConflict, "Conflict"}
	endShutdown  = streamEnd{http.StatusServiceUnavailable, "Service Unavailable"}
	endBehind    = streamEnd{http.StatusServiceUnavailable, "Service Unavailable: fell behind by more than stream_queue_size"}
)

// line is the end as nchan's status comment has it: "410 Gone".
func (e streamEnd) line() string { return itoa(e.status) + " " + e.reason }

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// endOf maps a subscription's end to the stream's.
func endOf(e pushstore.End) streamEnd {
	switch e {
	case pushstore.Deleted:
		return endDeleted
	case pushstore.Displaced:
		return endDisplaced
	case pushstore.Behind:
		return endBehind
	}
	return endShutdown // Shutdown, and Retry (a store that lost track)
}

// streams counts the open subscribers of each transport (the metrics and
// /push/stats show them).
var streams [numTransports]atomic.Int64

// pump sends the deliveries of sub through sw until the subscription ends,
// the timeout passes without a message, or gone is closed (the client
// left). Deliveries queued together are written together and flushed once.
// It cancels sub when it returns.
func (s *Subscriber) pump(sw streamWriter, sub pushstore.Subscription, channels int, ping time.Duration, gone <-chan struct{}) {
	defer sub.Cancel()
	var ids *runningID
	if channels > 1 {
		ids = newRunningID(channels)
	}
	var pingC <-chan time.Time
	if ping > 0 {
		t := time.NewTicker(ping)
		defer t.Stop()
		pingC = t.C
	}
	var timeoutC <-chan time.Time
	var timeout *time.Timer
	if s.Timeout > 0 {
		timeout = time.NewTimer(time.Duration(s.Timeout))
		defer timeout.Stop()
		timeoutC = timeout.C
	}
	var buf []pushstore.Delivery
	for {
		select {
		case <-sub.Ready():
			ds, end := sub.Take(buf[:0])
			for _, d := range ds {
				if ids != nil {
					ids.advance(d.Channel, d.Message.ID)
				}
				if sw.message(d.Message, ids) != nil {
					return
				}
			}
			if len(ds) > 0 && timeout != nil {
				timeout.Reset(time.Duration(s.Timeout)) // as nchan: a message restarts it
			}
			if end != pushstore.Open {
				_ = sw.end(endOf(end))
				_ = sw.flush()
				return
			}
			if sw.flush() != nil {
				return
			}
			clear(ds)
			buf = ds[:0]
		case <-pingC:
			if sw.ping() != nil || sw.flush() != nil {
				return
			}
		case <-timeoutC:
			_ = sw.end(endTimeout)
			_ = sw.flush()
			return
		case <-gone:
			return
		}
	}
}
