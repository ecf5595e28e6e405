package caddypush

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

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
// waiter counts live in Redis, so several Caddy instances sharing one Redis
// (standalone, Sentinel or Cluster) serve as one push server. Each instance
// keeps its own long-polls parked in memory and is woken through Redis
// pub/sub. It uses github.com/redis/go-redis/v9's UniversalClient.
type RedisBackend struct {
	// Addresses are the Redis servers: `host:port` or `redis://` and
	// `rediss://` URLs (a URL may carry the username, password, database
	// and TLS). One address is a standalone server; several are a Redis
	// Cluster's seed nodes; with Sentinel set, they are the Sentinels.
	// Placeholders such as {env.REDIS_URL} are replaced. nginx has no
	// equivalent (nchan: nchan_redis_url / nchan_redis_server). Default:
	// 127.0.0.1:6379.
	Addresses []string `json:"addresses,omitempty"`

	// Sentinel is the master name Redis Sentinel monitors; setting it makes
	// the addresses Sentinels, and the store follows failovers. The nginx
	// push module has no equivalent. Default: empty (no Sentinel).
	Sentinel string `json:"sentinel,omitempty"`

	// Username is the Redis ACL user. Placeholders are replaced. The nginx
	// push module has no equivalent. Default: empty (the default user).
	Username string `json:"username,omitempty"`

	// Password authenticates to Redis. Placeholders are replaced, so it can
	// come from {env.REDIS_PASSWORD}. The nginx push module has no
	// equivalent (nchan: the password of nchan_redis_url). Default: empty.
	Password string `json:"password,omitempty"`

	// SentinelPassword authenticates to the Sentinels, which often have no
	// password while Redis has one. Placeholders are replaced. The nginx
	// push module has no equivalent. Default: empty (no AUTH to the
	// Sentinels).
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// DB is the database number of a standalone or Sentinel-managed Redis
	// (Cluster has only 0). The nginx push module has no equivalent
	// (nchan: the path of nchan_redis_url). Default: 0.
	DB int `json:"db,omitempty"`

	// TLS connects with TLS, verifying the server against the system's
	// roots (or TLSCA); a rediss:// address turns it on too. The nginx push
	// module has no equivalent. Default: false.
	TLS bool `json:"tls,omitempty"`

	// TLSCA is a PEM file of the certificate authorities that sign the
	// Redis servers' certificates, for a private CA; it implies TLS. The
	// nginx push module has no equivalent. Default: empty (the system's
	// roots).
	TLSCA string `json:"tls_ca,omitempty"`

	// KeyPrefix starts every key and the pub/sub channel the store uses,
	// so several applications can share one Redis. The nginx push module
	// has no equivalent (nchan: nchan_redis_namespace). Default:
	// `caddy-push:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// DialTimeout bounds connecting to Redis, a duration. The nginx push
	// module has no equivalent. Default: 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`

	// ReadTimeout bounds waiting for one Redis reply, a duration; a request
	// whose store call times out is answered 503. The nginx push module has
	// no equivalent. Default: 3s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`

	// WriteTimeout bounds sending one Redis command, a duration. The nginx
	// push module has no equivalent. Default: 3s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`

	// PoolSize is the most connections to each Redis node. The nginx push
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
	if _, err := b.options(); err != nil {
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

// options builds go-redis's universal options from the addresses, reading
// URLs for credentials, database and TLS.
func (b *RedisBackend) options() (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{
		Username: b.Username, Password: b.Password, DB: b.DB, MasterName: b.Sentinel,
		DialTimeout: time.Duration(b.DialTimeout), ReadTimeout: time.Duration(b.ReadTimeout),
		WriteTimeout: time.Duration(b.WriteTimeout), PoolSize: b.PoolSize,
		// Fail fast when Redis is down: a request gets 503 in a few
		// milliseconds rather than after seconds of retries.
		MaxRetries: 2, MinRetryBackoff: 8 * time.Millisecond, MaxRetryBackoff: 256 * time.Millisecond,
		DialerRetries:   1,
		DisableIdentity: true,
		// RESP2: the plain pub/sub path; nothing here needs RESP3's push
		// notifications or go-redis's maintenance notifications.
		Protocol:                 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
	useTLS := b.TLS || b.TLSCA != ""
	for _, a := range b.Addresses {
		if !strings.Contains(a, "://") {
			o.Addrs = append(o.Addrs, a)
			continue
		}
		u, err := url.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("redis address %q: %v", redactURL(a), err)
		}
		switch u.Scheme {
		case "redis":
		case "rediss":
			useTLS = true
		default:
			return nil, fmt.Errorf("redis address %q: scheme must be redis or rediss", redactURL(a))
		}
		if u.Host == "" {
			return nil, fmt.Errorf("redis address %q has no host", redactURL(a))
		}
		host := u.Host
		if u.Port() == "" {
			host += ":6379"
		}
		o.Addrs = append(o.Addrs, host)
		if u.User != nil {
			if o.Username == "" {
				o.Username = u.User.Username()
			}
			if p, ok := u.User.Password(); ok && o.Password == "" {
				o.Password = p
			}
		}
		if db := strings.Trim(u.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("redis address %q: database must be a number", redactURL(a))
			}
			o.DB = n
		}
	}
	if useTLS {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if b.TLSCA != "" {
			pem, err := os.ReadFile(b.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("tls_ca: %v", err)
			}
			o.TLSConfig.RootCAs = x509.NewCertPool()
			if !o.TLSConfig.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca %s: no PEM certificate in it", b.TLSCA)
			}
		}
	}
	o.SentinelPassword = b.SentinelPassword
	return o, nil
}

// redactURL hides a URL's password for error messages.
func redactURL(a string) string {
	if u, err := url.Parse(a); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
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

// NewStore connects to Redis. It does not fail when Redis is not up yet:
// the store reports itself unavailable (503) until it is.
func (b *RedisBackend) NewStore(maxBytes int64) (Store, error) {
	o, err := b.options()
	if err != nil {
		return nil, err
	}
	return newRedisStore(redis.NewUniversalClient(o), b.KeyPrefix, maxBytes, caddy.Log().Named("push.stores.redis")), nil
}

// UnmarshalCaddyfile sets up the backend from Caddyfile tokens. Syntax:
//
//	store redis [<address...>] {
//		address       <host:port|redis://...|rediss://...>...
//		sentinel      <master-name>
//		username      <name>
//		password      <password>
//		sentinel_password <password>
//		db            <number>
//		tls
//		tls_ca        <pem-file>
//		key_prefix    <prefix>
//		dial_timeout  <duration>
//		read_timeout  <duration>
//		write_timeout <duration>
//		pool_size     <connections>
//	}
func (b *RedisBackend) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the backend name
	b.Addresses = append(b.Addresses, d.RemainingArgs()...)
	return blockOptions(d, "duplicate option '%s'", func() (string, error) { return d.Val(), nil }, func(opt string) error {
		var err error
		switch opt {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			b.Addresses = append(b.Addresses, args...)
		case "sentinel":
			b.Sentinel, err = oneArg(d)
		case "username":
			b.Username, err = oneArg(d)
		case "password":
			b.Password, err = oneArg(d)
		case "sentinel_password":
			b.SentinelPassword, err = oneArg(d)
		case "db":
			b.DB, err = intArg(d, 0)
		case "tls":
			if d.NextArg() {
				return d.ArgErr()
			}
			b.TLS = true
		case "tls_ca":
			b.TLSCA, err = oneArg(d)
		case "key_prefix":
			b.KeyPrefix, err = oneArg(d)
		case "dial_timeout":
			b.DialTimeout, err = durationArg(d)
		case "read_timeout":
			b.ReadTimeout, err = durationArg(d)
		case "write_timeout":
			b.WriteTimeout, err = durationArg(d)
		case "pool_size":
			b.PoolSize, err = intArg(d, 0)
		default:
			return d.Errf("unknown redis store option '%s'", opt)
		}
		return err
	})
}

// Interface guards
var (
	_ StoreBackend          = (*RedisBackend)(nil)
	_ caddy.Provisioner     = (*RedisBackend)(nil)
	_ caddy.Validator       = (*RedisBackend)(nil)
	_ caddyfile.Unmarshaler = (*RedisBackend)(nil)
)
