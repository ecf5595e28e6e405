package pushstore

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// MessageID identifies a message within its channel: the publication time
// in whole seconds (UTC) and a tag that orders messages published in the
// same second. Ids of a channel key only grow, across the channel's
// deletion and re-creation and whatever the clock does.
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

// IsZero reports whether id is the zero id, before every message.
func (id MessageID) IsZero() bool { return id == MessageID{} }

// String formats the id as nchan does, "time:tag".
func (id MessageID) String() string {
	return strconv.FormatInt(id.Time, 10) + ":" + strconv.FormatInt(id.Tag, 10)
}

// Message is one stored (or broadcast) message. It never changes after
// publication, so it is shared by every subscriber that is sent it.
type Message struct {
	ID          MessageID
	Body        []byte
	ContentType string // "" when the publisher sent none
	Event       string // the EventSource event name the publisher gave; "" for none

	memo   [memoSlots]atomic.Pointer[any]
	memoMu sync.Mutex // held while a representation is built, so each is built once
}

// MemoSlot names one representation of a message that its users compute
// once and share (a transport's encoding of it, say).
type MemoSlot int

const memoSlots = 8

var memoSlotsTaken atomic.Int32

// NewMemoSlot returns a slot for one more representation of messages. It
// is meant for package initialization; there are a few slots only.
func NewMemoSlot() MemoSlot {
	n := memoSlotsTaken.Add(1) - 1
	if n >= memoSlots {
		panic("pushstore: out of message memo slots")
	}
	return MemoSlot(n)
}

// Memo returns the representation of m in slot, computing it with build
// the first time, once: concurrent first calls wait for the one that
// builds it (a WebSocket frame is compressed once, however many
// subscribers are woken at the same time). build must not call Memo.
func (m *Message) Memo(slot MemoSlot, build func(*Message) any) any {
	p := &m.memo[slot]
	if v := p.Load(); v != nil {
		return *v
	}
	m.memoMu.Lock()
	defer m.memoMu.Unlock()
	if v := p.Load(); v != nil {
		return *v
	}
	v := build(m)
	p.Store(&v)
	return v
}
