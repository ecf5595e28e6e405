// Command blockcaddy is Caddy with one extra handler, bench_block, that holds
// every request until its client goes away: the floor for an idle long-poll
// in Caddy, measured by bench/idle-floor.sh beside caddy-push.
package main

import (
	"net/http"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func init() {
	caddy.RegisterModule(Block{})
	httpcaddyfile.RegisterHandlerDirective("bench_block", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		return Block{}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("bench_block", httpcaddyfile.Before, "respond")
}

// Block holds a request until the client goes away.
type Block struct{}

// CaddyModule returns the Caddy module information.
func (Block) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.bench_block", New: func() caddy.Module { return new(Block) }}
}

// ServeHTTP waits for the client to leave.
func (Block) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	<-r.Context().Done()
	return nil
}

func main() { caddycmd.Main() }
