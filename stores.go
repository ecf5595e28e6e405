package caddypush

import (
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func init() {
	caddy.RegisterModule(MemoryBackend{})
}

// Store is a channel store as the push app runs it: the protocol's
// operations (ChannelStore) plus its byte budget, background expiry,
// exit-time release and inspection for the admin API and metrics.
// MemoryStore is one; each push.stores module provides its own.
type Store interface {
	ChannelStore
	MaxBytes() int64
	SetMaxBytes(n int64)
	StartSweeper(every time.Duration)
	ReleaseAll() int
	Stats() (Stats, error)
	Channels(prefix, after string, limit int) ([]ChannelStat, bool, error)
	ChannelStatOf(key string) (ChannelStat, error)
	LastPublishOptions(key string, def PublishOptions) (PublishOptions, error)
	caddy.Destructor
}

// StoreBackend is a module in the push.stores namespace: it opens the
// process's store of its kind.
type StoreBackend interface {
	// PoolKey identifies the store in the process's pool: configs whose
	// backends have the same key share one store, with its messages and
	// waiters, across reloads.
	PoolKey() string
	// NewStore creates the store with a byte budget.
	NewStore(maxBytes int64) (Store, error)
	// DefaultMaxBytes is the byte budget when max_reserved_memory is
	// unset; 0 means no cap of ours.
	DefaultMaxBytes() int64
}

// MemoryBackend is the push.stores.memory module, the default store: every
// channel, message and waiter in this process's memory.
type MemoryBackend struct{}

// CaddyModule returns the Caddy module information.
func (MemoryBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push.stores.memory",
		New: func() caddy.Module { return new(MemoryBackend) },
	}
}

// PoolKey returns the one key of the in-memory store.
func (MemoryBackend) PoolKey() string { return storeKey }

// DefaultMaxBytes is DefaultMaxReservedMemory: process memory is capped by
// default.
func (MemoryBackend) DefaultMaxBytes() int64 { return DefaultMaxReservedMemory }

// NewStore returns an empty in-memory store.
func (MemoryBackend) NewStore(maxBytes int64) (Store, error) {
	return NewMemoryStore(maxBytes, nil), nil
}

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	store memory
func (MemoryBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("the memory store takes no options")
	}
	return nil
}

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

// storeKey is the pool key of the in-memory store.
const storeKey = "push.store.memory"

// runningStore is the store of the config that started last; the admin API
// serves it. It is cleared when that store is destroyed.
var runningStore atomic.Pointer[storeRef]

type storeRef struct{ Store }

// Interface guards
var (
	_ Store                 = (*MemoryStore)(nil)
	_ StoreBackend          = MemoryBackend{}
	_ caddyfile.Unmarshaler = MemoryBackend{}
)
