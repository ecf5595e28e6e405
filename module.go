// Package caddypush is the nginx HTTP Push Module ("Comet" long-polling
// pub/sub) as a Caddy v2 app (push) and HTTP handlers (push_publisher,
// push_subscriber), with an admin API and metrics. This package is the
// Caddy layer: configuration, lifecycle and HTTP; the channel stores are
// in pushstore (the contract and the memory store) and redisstore.
package caddypush

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

	"github.com/caddypush/caddy-push/pushstore"
)

func init() {
	caddy.RegisterModule(App{})
}

// DefaultMaxReservedMemory is the store's byte budget when none is set, as
// nginx's push_max_reserved_memory default.
const DefaultMaxReservedMemory = 32 << 20

// stores keeps the channel store alive across config reloads: the app of a
// new config finds the store of the old one, with its messages and the
// long-polls parked on it.
var stores = caddy.NewUsagePool()

// App is the `push` app: it owns the channel store shared by every
// push_publisher and push_subscriber handler of the process, with its
// memory limit and expiry. The store outlives config reloads; changed
// limits are applied to it in place.
type App struct {
	// MaxReservedMemory is the byte budget of the whole store: message
	// bodies, content types, ids and per-message and per-channel overhead.
	// A publication that does not fit, even after expired messages and empty
	// channels are collected, is refused with 507. With the Redis store it
	// caps Redis's own used_memory (summed over a Cluster's masters), and
	// unset means no cap of ours (Redis's maxmemory still answers 507).
	// Equivalent to nginx push_max_reserved_memory. Default: 32 MiB (memory
	// store), none (Redis store).
	MaxReservedMemory int64 `json:"max_reserved_memory,omitempty"`

	// MaxBodyMemory caps the bytes held by the publication bodies being
	// received at once, over every publisher location and the admin API:
	// a body that would pass it gets 503 with Retry-After (one body alone
	// may always grow to its location's max_message_size). Bodies are held
	// in buffers that grow with the bytes that arrive, never with a
	// Content-Length announced. nginx has no equivalent (it buffers large
	// bodies to disk). Default: 32 MiB.
	MaxBodyMemory int64 `json:"max_body_memory,omitempty"`

	// DisableMetrics turns off the caddy_push_* Prometheus metrics on the
	// admin endpoint's /metrics. nginx has no equivalent. Default: false.
	DisableMetrics bool `json:"disable_metrics,omitempty"`

	// StoreRaw is the channel store backend, a module in the push.stores
	// namespace. nginx has no equivalent (its store is always shared
	// memory). Default: memory.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=push.stores inline_key=backend"`

	store   pushstore.Store
	poolKey string
	logger  *zap.Logger
}

// pooled keeps a store in the pool: the pool destroys what it holds with
// Destruct, a store ends with Close.
type pooled struct{ pushstore.Store }

// Destruct closes the store: its last user is gone. The WebSockets that
// publish into it are closed first (1001), as its subscribers' streams
// end: left open, they would go on publishing into the closed store, and
// the subscribers of the config's new store would never get what they
// send.
func (p pooled) Destruct() error {
	publishingSockets.goingAway(caddy.Log().Named("push"), p.Store)
	if r, ok := p.Store.(pushstore.Runner); ok {
		return r.Close()
	}
	return nil
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision gets the process's store, creating it on first use.
func (app *App) Provision(ctx caddy.Context) error {
	app.logger = ctx.Logger()
	var backend StoreBackend = MemoryBackend{}
	if app.StoreRaw != nil {
		mod, err := ctx.LoadModule(app, "StoreRaw")
		if err != nil {
			return fmt.Errorf("loading store backend: %v", err)
		}
		backend = mod.(StoreBackend)
	}
	if app.MaxReservedMemory == 0 {
		app.MaxReservedMemory = backend.DefaultMaxBytes()
	}
	if app.MaxBodyMemory == 0 {
		app.MaxBodyMemory = DefaultMaxBodyMemory
	}
	val, _, err := stores.LoadOrNew(backend.PoolKey(), func() (caddy.Destructor, error) {
		st, err := backend.NewStore(app.MaxReservedMemory)
		return pooled{st}, err
	})
	if err != nil {
		return fmt.Errorf("opening channel store: %v", err)
	}
	app.store, app.poolKey = val.(pooled).Store, backend.PoolKey()

	if !app.DisableMetrics {
		// Each config has a fresh registry; the collector reads the pooled
		// store and package-level counters, so values survive reloads.
		if err := ctx.GetMetricsRegistry().Register(collector{app.store}); err != nil {
			return fmt.Errorf("registering metrics: %v", err)
		}
	}

	// On process exit, parked long-polls must be answered at once (304), or
	// the http app's shutdown waits for them. The "stopping" event comes
	// before any app is stopped; a reload sends it too, but then waiters
	// stay parked on the store, which the new config keeps using.
	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("loading events app: %v", err)
	}
	events := eventsApp.(*caddyevents.App)
	if err := events.On("started", startedHandler{app}); err != nil {
		return err
	}
	return events.On("stopping", stoppingHandler{app})
}

// Validate checks the configuration.
func (app *App) Validate() error {
	if app.MaxReservedMemory < 0 {
		return fmt.Errorf("max_reserved_memory must not be negative, got %d", app.MaxReservedMemory)
	}
	if app.MaxBodyMemory < 0 {
		return fmt.Errorf("max_body_memory must not be negative, got %d", app.MaxBodyMemory)
	}
	return nil
}

// Start starts the store's expiry sweeper (once per store). The config's
// limits are applied when every app of the config has started
// (startedHandler): a config that Caddy refuses because another app
// failed to start leaves the running config's limits alone.
func (app *App) Start() error {
	if r, ok := app.store.(pushstore.Runner); ok {
		r.Start()
	}
	return nil
}

// startedHandler makes a config that started the running one: its limits
// apply to the shared store and body budget, and the admin API serves its
// store.
type startedHandler struct{ app *App }

// Handle answers Caddy's "started" event, which comes once every app of
// the config started.
func (h startedHandler) Handle(context.Context, caddy.Event) error {
	running.mu.Lock()
	defer running.mu.Unlock()
	running.previous, running.current = running.current, h.app
	h.app.apply()
	return nil
}

// running are the push apps of the config that started last and of the
// one before it. Caddy may still refuse a config after its started event
// (its admin config loader or remote admin fails to start): the one
// before it then goes on running, and its settings come back when the
// refused one is cleaned up.
var running struct {
	mu                sync.Mutex
	current, previous *App
}

// apply makes app's limits and store the running ones.
func (app *App) apply() {
	if b, ok := app.store.(pushstore.Budget); ok {
		if prev := b.MaxBytes(); prev != app.MaxReservedMemory {
			app.logger.Info("applying store limit",
				zap.Int64("max_reserved_memory", app.MaxReservedMemory), zap.Int64("previous", prev))
			b.SetMaxBytes(app.MaxReservedMemory)
		}
	}
	bodies.max.Store(app.MaxBodyMemory)
	runningStore.Store(&storeRef{app.store})
}

// runningStore is the store of the config that started last; the admin API
// serves it. It is cleared when that store is destroyed.
var runningStore atomic.Pointer[storeRef]

type storeRef struct{ pushstore.Store }

// Stop does nothing: the store and its sweeper belong to the pool and live
// on while another config uses them.
func (app *App) Stop() error { return nil }

// Cleanup releases this config's use of the store; the last user destroys
// it, which stops the sweeper and releases every waiter.
func (app *App) Cleanup() error {
	if app.store == nil {
		return nil
	}
	running.mu.Lock()
	switch app {
	case running.current: // refused after it started, or the exit
		running.current, running.previous = running.previous, nil
		if running.current != nil {
			running.current.apply()
		}
	case running.previous: // replaced by the current one
		running.previous = nil
	}
	running.mu.Unlock()
	destroyed, err := stores.Delete(app.poolKey)
	if ref := runningStore.Load(); destroyed && ref != nil && ref.Store == app.store {
		runningStore.CompareAndSwap(ref, nil)
	}
	return err
}

// Store returns the channel store.
func (app *App) Store() pushstore.Store { return app.store }

// stoppingHandler releases every waiter when the process exits.
type stoppingHandler struct{ app *App }

// Handle answers Caddy's "stopping" event.
func (h stoppingHandler) Handle(context.Context, caddy.Event) error {
	if !caddy.Exiting() {
		return nil
	}
	if r, ok := h.app.store.(pushstore.Runner); ok {
		n := r.ReleaseAll()
		h.app.logger.Info("released waiting subscribers for exit", zap.Int("waiters", n))
	}
	if n := publishingSockets.goingAway(h.app.logger, nil); n > 0 {
		h.app.logger.Info("closed publishing websockets for exit", zap.Int("sockets", n))
	}
	// The streams on hijacked connections (WebSockets, direct HTTP/1.1
	// streams) now write their ends; let them finish before the process
	// goes.
	if !hijacked.wait(2 * time.Second) {
		h.app.logger.Warn("hijacked streams still closing at exit")
	}
	return nil
}

// Interface guards
var (
	_ caddy.App           = (*App)(nil)
	_ caddy.Provisioner   = (*App)(nil)
	_ caddy.Validator     = (*App)(nil)
	_ caddy.CleanerUpper  = (*App)(nil)
	_ caddyevents.Handler = stoppingHandler{}
	_ caddyevents.Handler = startedHandler{}
)
