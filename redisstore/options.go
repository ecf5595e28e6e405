package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// Options configure a Store: where Redis is and how to reach it.
type Options struct {
	// Addresses are `host:port` or redis:// and rediss:// URLs (a URL may
	// carry the username, password, database and TLS). One address is a
	// standalone server; several are a Cluster's seed nodes; with Sentinel
	// set, they are the Sentinels.
	Addresses []string
	// Sentinel is the master name Sentinel monitors ("": no Sentinel).
	Sentinel string
	// Username and Password authenticate to Redis (ACL); SentinelPassword
	// to the Sentinels.
	Username, Password, SentinelPassword string
	// DB is the database of a standalone or Sentinel-managed Redis.
	DB int
	// TLS connects with TLS, verifying against the system's roots, or
	// against the PEM file TLSCA when it is set (which implies TLS).
	TLS   bool
	TLSCA string
	// KeyPrefix starts every key and the notification channel.
	KeyPrefix string
	// Bounds on one connect, one reply and one command.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the most connections per node (0: go-redis's default).
	PoolSize int
	// MaxBytes caps Redis's used_memory (0: no cap of ours).
	MaxBytes int64
	// Logger receives the store's logs (zap.NewNop when nil).
	Logger *zap.Logger
}

// universal builds go-redis's options from o, reading URLs for
// credentials, database and TLS.
func (o Options) universal() (*redis.UniversalOptions, error) {
	u := &redis.UniversalOptions{
		Username: o.Username, Password: o.Password, DB: o.DB, MasterName: o.Sentinel,
		DialTimeout: o.DialTimeout, ReadTimeout: o.ReadTimeout, WriteTimeout: o.WriteTimeout, PoolSize: o.PoolSize,
		// No retries: a call whose answer is late or lost may have run in
		// Redis, and a script that runs twice publishes twice (or counts
		// a subscriber twice). A call that fails is answered 503 at once;
		// go-redis checks a pooled connection before it sends on it, so a
		// Redis restart costs no failed call.
		MaxRetries:      -1,
		DialerRetries:   1,
		DisableIdentity: true,
		// RESP2: the plain pub/sub path; nothing here needs RESP3's push
		// notifications or go-redis's maintenance notifications.
		Protocol:                 2,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
		SentinelPassword:         o.SentinelPassword,
	}
	useTLS := o.TLS || o.TLSCA != ""
	for _, a := range o.Addresses {
		if !strings.Contains(a, "://") {
			u.Addrs = append(u.Addrs, a)
			continue
		}
		p, err := url.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("redis address %q: %v", redactURL(a), err)
		}
		switch p.Scheme {
		case "redis":
		case "rediss":
			useTLS = true
		default:
			return nil, fmt.Errorf("redis address %q: scheme must be redis or rediss", redactURL(a))
		}
		if p.Host == "" {
			return nil, fmt.Errorf("redis address %q has no host", redactURL(a))
		}
		host := p.Host
		if p.Port() == "" {
			host += ":6379"
		}
		u.Addrs = append(u.Addrs, host)
		if p.User != nil {
			if u.Username == "" {
				u.Username = p.User.Username()
			}
			if pw, ok := p.User.Password(); ok && u.Password == "" {
				u.Password = pw
			}
		}
		if db := strings.Trim(p.Path, "/"); db != "" {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("redis address %q: database must be a number", redactURL(a))
			}
			u.DB = n
		}
	}
	if useTLS {
		u.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.TLSCA != "" {
			pem, err := os.ReadFile(o.TLSCA)
			if err != nil {
				return nil, fmt.Errorf("tls_ca: %v", err)
			}
			u.TLSConfig.RootCAs = x509.NewCertPool()
			if !u.TLSConfig.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("tls_ca %s: no PEM certificate in it", o.TLSCA)
			}
		}
	}
	return u, nil
}

// Check reports what is wrong with o, without connecting.
func (o Options) Check() error {
	_, err := o.universal()
	return err
}

// redactURL hides a URL's password for error messages.
func redactURL(a string) string {
	if u, err := url.Parse(a); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
