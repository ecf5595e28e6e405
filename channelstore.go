package caddypush

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the push.stores.memory module and what every store
// module is to the push app (StoreBackend). The memory store itself is
// pushstore.MemoryStore.

func init() {
	caddy.RegisterModule(MemoryBackend{})
}

// StoreBackend is a module in the push.stores namespace: it opens the
// process's store of its kind.
type StoreBackend interface {
	// PoolKey identifies the store in the process's pool: configs whose
	// backends have the same key share one store, with its messages and
	// subscribers, across reloads.
	PoolKey() string
	// NewStore creates the store with a byte budget.
	NewStore(maxBytes int64) (pushstore.Store, error)
	// DefaultMaxBytes is the byte budget when max_reserved_memory is
	// unset; 0 means no cap of ours.
	DefaultMaxBytes() int64
}

// MemoryBackend is the push.stores.memory module, the default store: every
// channel, message and subscriber in this process's memory. It has no
// options; nginx's push module always stores this way (in shared memory).
type MemoryBackend struct{}

// CaddyModule returns the Caddy module information.
func (MemoryBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push.stores.memory",
		New: func() caddy.Module { return new(MemoryBackend) },
	}
}

// memoryPoolKey is the pool key of the in-memory store.
const memoryPoolKey = "push.store.memory"

// PoolKey returns the one key of the in-memory store.
func (MemoryBackend) PoolKey() string { return memoryPoolKey }

// DefaultMaxBytes is DefaultMaxReservedMemory: process memory is capped by
// default.
func (MemoryBackend) DefaultMaxBytes() int64 { return DefaultMaxReservedMemory }

// NewStore returns an empty in-memory store.
func (MemoryBackend) NewStore(maxBytes int64) (pushstore.Store, error) {
	return pushstore.NewMemoryStore(maxBytes, nil), nil
}

// Interface guards
var (
	_ StoreBackend          = MemoryBackend{}
	_ caddyfile.Unmarshaler = MemoryBackend{}
)
