package caddypush

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddypush/caddy-push/pushstore"
	"github.com/caddypush/caddy-push/redisstore"
)

// This file holds the push.stores.redis module: the Redis store's
// configuration, mapped onto the redisstore package.

func init() {
	caddy.RegisterModule(RedisBackend{})
}

// Defaults of the Redis store.
const (
	DefaultRedisAddress   = "127.0.0.1:6379"
	DefaultRedisKeyPrefix = "caddy-push:"
	DefaultRedisTimeout   = 3 * time.Second
	DefaultRedisDial      = 5 * time.Second
)

// RedisBackend is the push.stores.redis module: channels, messages and
// subscriber counts live in Redis, so several Caddy instances sharing one
// Redis (standalone, Sentinel or Cluster) serve as one push server. Each
// instance keeps its own subscribers in memory and is woken through Redis
// pub/sub. It uses github.com/redis/go-redis/v9's UniversalClient.
type RedisBackend struct {
	// Addresses are the Redis servers: `host:port` or `redis://` and
	// `rediss://` URLs (a URL may carry the username, password, database
	// and TLS). One address is a standalone server; several are a Redis
	// Cluster's seed nodes; with Sentinel set, they are the Sentinels.
	// Placeholders such as {env.REDIS_URL} are replaced. nginx's push
	// module has no equivalent (nchan: nchan_redis_url /
	// nchan_redis_server). Default: 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`

	// Sentinel is the master name Redis Sentinel monitors; setting it makes
	// the addresses Sentinels, and the store follows failovers. nginx's
	// push module has no equivalent. Default: empty (no Sentinel).
	Sentinel string `json:"sentinel,omitempty"`

	// Username is the Redis ACL user. Placeholders are replaced. nginx's
	// push module has no equivalent. Default: empty (the default user).
	Username string `json:"username,omitempty"`

	// Password authenticates to Redis. Placeholders are replaced, so it can
	// come from {env.REDIS_PASSWORD}. nginx's push module has no
	// equivalent (nchan: the password of nchan_redis_url). Default: empty.
	Password string `json:"password,omitempty"`

	// SentinelPassword authenticates to the Sentinels, which often have no
	// password while Redis has one. Placeholders are replaced. nginx's push
	// module has no equivalent. Default: empty (no AUTH to the Sentinels).
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// DB is the database number of a standalone or Sentinel-managed Redis
	// (Cluster has only 0). nginx's push module has no equivalent (nchan:
	// the path of nchan_redis_url). Default: 0.
	DB int `json:"db,omitempty"`

	// TLS connects with TLS, verifying the server against the system's
	// roots (or TLSCA); a rediss:// address turns it on too. nginx's push
	// module has no equivalent. Default: false.
	TLS bool `json:"tls,omitempty"`

	// TLSCA is a PEM file of the certificate authorities that sign the
	// Redis servers' certificates, for a private CA; it implies TLS.
	// nginx's push module has no equivalent. Default: empty (the system's
	// roots).
	TLSCA string `json:"tls_ca,omitempty"`

	// KeyPrefix starts every key and the pub/sub channel the store uses,
	// so several applications can share one Redis. nginx's push module has
	// no equivalent (nchan: nchan_redis_namespace). Default: `caddy-push:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// DialTimeout bounds connecting to Redis, a duration. nginx's push
	// module has no equivalent. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// ReadTimeout bounds waiting for one Redis reply, a duration; a request
	// whose store call times out is answered 503. nginx's push module has
	// no equivalent. Default: 3s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`

	// WriteTimeout bounds sending one Redis command, a duration. nginx's
	// push module has no equivalent. Default: 3s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// PoolSize is the most connections to each Redis node. nginx's push
	// module has no equivalent. Default: go-redis's, 10 per CPU.
	PoolSize int `json:"pool_size,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (RedisBackend) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "push.stores.redis",
		New: func() caddy.Module { return new(RedisBackend) },
	}
}

// Provision replaces placeholders and sets defaults.
func (b *RedisBackend) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	for i, a := range b.Addresses {
		b.Addresses[i] = repl.ReplaceKnown(a, "")
	}
	b.Username = repl.ReplaceKnown(b.Username, "")
	b.Password = repl.ReplaceKnown(b.Password, "")
	b.SentinelPassword = repl.ReplaceKnown(b.SentinelPassword, "")
	b.TLSCA = repl.ReplaceKnown(b.TLSCA, "")
	if len(b.Addresses) == 0 {
		b.Addresses = []string{DefaultRedisAddress}
	}
	if b.KeyPrefix == "" {
		b.KeyPrefix = DefaultRedisKeyPrefix
	}
	if b.DialTimeout == 0 {
		b.DialTimeout = caddy.Duration(DefaultRedisDial)
	}
	if b.ReadTimeout == 0 {
		b.ReadTimeout = caddy.Duration(DefaultRedisTimeout)
	}
	if b.WriteTimeout == 0 {
		b.WriteTimeout = caddy.Duration(DefaultRedisTimeout)
	}
	return nil
}

// Validate checks the configuration.
func (b *RedisBackend) Validate() error {
	if err := b.options(0).Check(); err != nil {
		return err
	}
	switch {
	case b.DB < 0:
		return fmt.Errorf("db must not be negative")
	case b.PoolSize < 0:
		return fmt.Errorf("pool_size must not be negative")
	case b.DialTimeout < 0 || b.ReadTimeout < 0 || b.WriteTimeout < 0:
		return fmt.Errorf("timeouts must not be negative")
	case strings.ContainsAny(b.KeyPrefix, "{}"):
		return fmt.Errorf("key_prefix must not contain { or } (they mark Redis Cluster hash tags)")
	}
	return nil
}

// options maps the configuration onto the store's options.
func (b *RedisBackend) options(maxBytes int64) redisstore.Options {
	return redisstore.Options{
		Addresses: b.Addresses, Sentinel: b.Sentinel, Username: b.Username, Password: b.Password,
		SentinelPassword: b.SentinelPassword, DB: b.DB, TLS: b.TLS, TLSCA: b.TLSCA, KeyPrefix: b.KeyPrefix,
		DialTimeout: time.Duration(b.DialTimeout), ReadTimeout: time.Duration(b.ReadTimeout),
		WriteTimeout: time.Duration(b.WriteTimeout), PoolSize: b.PoolSize, MaxBytes: maxBytes,
		Logger: caddy.Log().Named("push.stores.redis"),
	}
}

// PoolKey identifies the Redis store by everything that selects its data:
// configs that reach the same keys share one client and connection pool
// across reloads. The password enters only as a hash.
func (b *RedisBackend) PoolKey() string {
	sum := sha256.Sum256([]byte(b.Password + "\x00" + b.SentinelPassword))
	id, _ := json.Marshal([]any{b.Addresses, b.Sentinel, b.Username, hex.EncodeToString(sum[:8]), b.DB, b.TLS, b.TLSCA,
		b.KeyPrefix, b.DialTimeout, b.ReadTimeout, b.WriteTimeout, b.PoolSize})
	return "push.store.redis:" + string(id)
}

// DefaultMaxBytes is 0: without max_reserved_memory, only Redis's own
// maxmemory limits the store.
func (b *RedisBackend) DefaultMaxBytes() int64 { return 0 }

// NewStore makes the store; it connects when the app starts. It does not
// fail when Redis is not up yet: the store answers 503 until it is.
func (b *RedisBackend) NewStore(maxBytes int64) (pushstore.Store, error) {
	return redisstore.New(b.options(maxBytes))
}

// Interface guards
var (
	_ StoreBackend          = (*RedisBackend)(nil)
	_ caddy.Provisioner     = (*RedisBackend)(nil)
	_ caddy.Validator       = (*RedisBackend)(nil)
	_ caddyfile.Unmarshaler = (*RedisBackend)(nil)
)
