// Package pushstore is the channel store of caddy-push: the contract every
// store backend implements, the protocol's state machine (ids, buffers,
// expiry, recipient rules, concurrency), and the in-memory store. It knows
// nothing of HTTP or Caddy; the handlers translate requests into its
// calls, and each backend (this package's MemoryStore, the redisstore
// package) implements Store.
//
// The contract is split as Mercure's transports and Centrifuge's brokers
// are: a small core (Store) that every backend implements, and optional
// interfaces a backend implements when it can (Inspector for the admin
// API, Budget for max_reserved_memory, Runner for background work and
// resources).
package pushstore

import (
	"errors"
	"slices"
	"time"
)

// Store is the core contract: the protocol's operations on channels. A
// channel is named by its key (the handlers use group + "/" + id) and
// holds a buffer of messages and the subscriptions waiting on it.
//
// Every implementation guarantees:
//
//   - Publish is atomic for its channel: it assigns the message's id,
//     stores it (unless storing is off), and queues it to every
//     subscription registered on the channel at that moment, in one step.
//     So the subscribers of a channel see its messages in id order, and
//     two publications to one channel are never seen in different orders.
//   - A channel key's ids only grow, across the channel's deletion,
//     expiry and re-creation, and whatever the clock does.
//   - Subscribe is atomic for its channel with respect to Publish: it
//     either answers the first stored message after the cursor, or
//     registers the subscription, so that no message published after the
//     lookup is missed and none before it is queued again.
//   - A subscription is queued every message published to its channel
//     while it is registered, once, in order, until it ends. A one-shot
//     subscription (a long-poll) ends with its first message.
//   - Cancel after a delivery: the delivery stands and is counted; a Take
//     after Cancel returns it, and the subscriber may still send it.
type Store interface {
	// Publish stores (unless opts.StoreMessages is off) and broadcasts a
	// message: msg's Body, ContentType and Event. The store sets its ID and
	// may keep msg itself; the caller must not change it afterwards. It
	// answers ErrInsufficientStorage when the store is full even after
	// collecting what has expired.
	Publish(key string, msg *Message, opts PublishOptions) (PublishResult, error)
	// Subscribe answers a one-channel long-poll or interval-poll: an
	// immediate message, a registered one-shot subscription, or neither
	// (an interval-poll with nothing new). It answers ErrChannelNotFound
	// (the channel is missing and may not be made), ErrConflict (`first`
	// concurrency), ErrTooManySubscribers or ErrInsufficientStorage.
	Subscribe(key string, req SubscribeRequest) (SubscribeResult, error)
	// Follow registers a subscription on one or more channels: a stream,
	// or a multiplexed poll. It is queued the stored messages after its
	// cursor on each channel (its backlog), then every message published
	// to them while it lasts, all in publication order (Delivery.Seq), with
	// no gap and no duplicate between the two. A one-shot subscription is
	// queued only the first of those. It answers as Subscribe does; with
	// req.NoWait and nothing to send, it returns a nil Subscription.
	Follow(keys []string, req FollowRequest) (Subscription, error)
	// Touch creates the channel if needed, sets its channel_timeout and
	// returns its info (a publisher's PUT).
	Touch(key string, channelTimeout time.Duration) (ChannelInfo, error)
	// Info returns a channel's info, or ErrChannelNotFound.
	Info(key string) (ChannelInfo, error)
	// Delete removes a channel and its messages and ends every
	// subscription on it with Deleted. It returns the info from before the
	// deletion, or ErrChannelNotFound.
	Delete(key string) (ChannelInfo, error)
	// Counters returns this process's lifetime counts. It is cheap and
	// never fails, even when the backend cannot be reached.
	Counters() Counters
}

// Inspector is a store the admin API and the metrics can look into. Its
// methods may scan the store; their cost grows with its size.
type Inspector interface {
	// Stats returns the store's size.
	Stats() (Stats, error)
	// Channels returns up to limit channels whose key starts with prefix
	// and sorts after `after`, in key order, and when more follow, the
	// key to list after next (the last one it looked at, which may be
	// gone, as may every channel of the page), or "".
	Channels(prefix, after string, limit int) (page []ChannelStat, next string, err error)
	// Channel describes one channel, or answers ErrChannelNotFound.
	Channel(key string) (ChannelStat, error)
	// LastPublishOptions returns the options of a channel's last
	// publication, or def when there is none.
	LastPublishOptions(key string, def PublishOptions) (PublishOptions, error)
}

// Budget is a store with a byte budget (max_reserved_memory).
type Budget interface {
	MaxBytes() int64
	SetMaxBytes(n int64)
}

// Runner is a store with background work or resources.
type Runner interface {
	// Start begins the background work (expiry, connections). A store
	// that is only validated is never started. Calling it again does
	// nothing.
	Start()
	// ReleaseAll ends every subscription with Shutdown and makes later
	// ones end at once: the process is exiting. It returns how many it
	// ended.
	ReleaseAll() int
	// Close stops the background work and frees the resources, ending
	// every subscription first.
	Close() error
}

// Errors a store answers with; the handlers map each to a status.
var (
	// ErrInsufficientStorage means the store is over its byte budget even
	// after collecting expired messages and idle channels (507).
	ErrInsufficientStorage = errors.New("channel store is over max_reserved_memory")
	// ErrChannelNotFound means the channel does not exist and the request
	// may not create it.
	ErrChannelNotFound = errors.New("channel not found")
	// ErrConflict means `first` concurrency refused a second subscriber
	// (409).
	ErrConflict = errors.New("channel already has a waiting subscriber")
	// ErrTooManySubscribers means max_channel_subscribers was reached (403).
	ErrTooManySubscribers = errors.New("channel has reached max_channel_subscribers")
)

// UnavailableError is a store's answer when its backend cannot be reached;
// the handlers answer it with 503 and a body naming the store.
type UnavailableError struct {
	Backend string // the store's name, as in the config: "redis"
	Err     error
}

func (e *UnavailableError) Error() string {
	return e.Backend + " channel store unavailable: " + e.Err.Error()
}

// Unwrap returns the backend's error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Defaults the stores share with the handlers.
const (
	// DefaultChannelTimeout is how long an empty channel lives after its
	// last use when no publisher has set channel_timeout on it.
	DefaultChannelTimeout = time.Hour
	// DefaultMinBuffer is a new channel's min_message_buffer_length until
	// a publication sets it.
	DefaultMinBuffer = 1
)

// Accounting overheads, in bytes, charged against max_reserved_memory on
// top of the bytes a message or channel key holds. They approximate the Go
// structures that hold them (struct, slice slot, map entry).
const (
	MessageOverhead = 128
	ChannelOverhead = 320
)

// Concurrency is how a subscriber location treats a channel that already
// has subscribers.
type Concurrency uint8

// The concurrency modes of push_subscriber_concurrency.
const (
	Broadcast Concurrency = iota // any number of subscribers
	First                        // a new subscriber is refused (ErrConflict)
	Last                         // the current subscribers end Displaced
)

// ChannelInfo is a channel's information (the publisher's answers).
type ChannelInfo struct {
	Messages    int   // stored, unexpired messages
	Requested   int64 // seconds since a subscriber last asked; -1 = never
	Subscribers int   // subscriptions
}

// PublishOptions are the publisher location's message settings; they are
// stored with each message they apply to.
type PublishOptions struct {
	StoreMessages        bool
	MaxBufferLength      int
	MinBufferLength      int
	MinRecipients        int
	DeleteOldestReceived bool
	MessageTimeout       time.Duration // 0: never expires
	ChannelTimeout       time.Duration
}

// PublishResult is the outcome of a publication.
type PublishResult struct {
	ID MessageID
	// Info has the subscriber count from before the broadcast and the
	// stored message count after trimming.
	Info ChannelInfo
	// Delivered is how many subscriptions were sent the message.
	Delivered int
}

// SubscribeRequest describes one subscriber request.
type SubscribeRequest struct {
	Cursor      MessageID // the id the client last received
	HasCursor   bool      // the request carried a cursor
	Start       Start     // where a request without a cursor begins
	Create      bool      // the request may create the channel
	Wait        bool      // long-poll: register when nothing is there yet
	Concurrency Concurrency
	MaxWaiters  int // 0: unlimited
}

// Start is where a subscriber without a cursor begins (first_message):
// with Newest, at the next publication; otherwise at the At-th oldest
// stored message (0 and 1: the oldest; past the newest: the newest), or,
// for a negative At, at the -At-th newest (the last -At messages; before
// the oldest: the oldest).
type Start struct {
	Newest bool
	At     int
}

// FollowRequest describes a subscription that Follow registers.
type FollowRequest struct {
	Cursors    []MessageID // per channel, when HasCursor
	HasCursor  bool
	Start      Start
	Create     bool  // the request may create the channels
	OneShot    bool  // end with the first message (a multiplexed long-poll)
	NoWait     bool  // with nothing to send now, register nothing (an interval-poll)
	QueueBytes int64 // a stream's queue limit (see Queue.Init)
	// OnBehind, when set, is run in a goroutine of its own once the
	// subscription ends Behind (see Queue.OnBehind).
	OnBehind    func()
	Concurrency Concurrency
	MaxWaiters  int // 0: unlimited
}

// On returns req as it applies to the channel at position i of keys. A
// channel named again (?ids=a,a) is followed again, as nchan does (each
// message comes once per position), and the subscription is no second
// subscriber of it for the concurrency and limit checks: it neither
// refuses nor displaces itself.
func (req FollowRequest) On(keys []string, i int) FollowRequest {
	if (req.Concurrency != Broadcast || req.MaxWaiters > 0) && slices.Contains(keys[:i], keys[i]) {
		req.Concurrency, req.MaxWaiters = Broadcast, 0
	}
	return req
}

// LookFirst is how a store's Follow starts a multiplexed long-poll: it
// first looks at every channel, waiting on none (follow, with req as an
// interval-poll), and is answered with the oldest stored message if one
// has any. Registered on an earlier channel while it looked at a later
// one, it would be pushed a live message, its answer, whose compound id
// moves past an older second's stored message of the later channel
// (lost). It reports done when the look answered (sub, or err); only a
// poll that found nothing goes on to register.
func LookFirst(keys []string, req FollowRequest, follow func([]string, FollowRequest) (Subscription, error)) (sub Subscription, done bool, err error) {
	if !req.OneShot || req.NoWait || len(keys) < 2 {
		return nil, false, nil
	}
	req.OneShot, req.NoWait = false, true
	sub, err = follow(keys, req)
	return sub, err != nil || sub != nil, err
}

// SubscribeResult is the outcome of Subscribe: an immediate message, a
// registered subscription, or neither (an interval-poll with nothing new).
type SubscribeResult struct {
	Message *Message
	Sub     Subscription
}

// Counters are a process's lifetime counts.
type Counters struct {
	Published uint64 `json:"published"` // messages accepted by Publish
	Delivered uint64 `json:"delivered"` // messages sent to subscribers
	Expired   uint64 `json:"expired"`   // stored messages removed by message_timeout
}

// Stats is the size of a store.
type Stats struct {
	Channels int   `json:"channels"`
	Messages int   `json:"messages"`
	Waiters  int   `json:"waiters"` // subscriptions registered by this process
	Bytes    int64 `json:"bytes"`
	MaxBytes int64 `json:"max_bytes"`
	// ChannelBytes is the part of Bytes the channels themselves take (their
	// keys and overhead), messages apart: channels that subscribers create
	// and wait on hold it too.
	ChannelBytes int64 `json:"channel_bytes"`
}

// ChannelStat describes one channel for the admin API.
type ChannelStat struct {
	Key           string `json:"key,omitempty"` // the admin API answers group and id instead
	Messages      int    `json:"messages"`
	Waiters       int    `json:"waiters"`
	LastRequested int64  `json:"last_requested"` // seconds ago; -1 = never
	Bytes         int64  `json:"bytes"`
}
