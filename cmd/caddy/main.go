// Command caddy is Caddy with its standard modules plus caddy-push, for
// running the module from a checkout without xcaddy:
//
//	go run ./cmd/caddy run --config example.Caddyfile
//
// Users install with `xcaddy build --with github.com/caddypush/caddy-push`.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddypush/caddy-push"
)

func main() {
	caddycmd.Main()
}
