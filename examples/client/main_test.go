package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddypush/caddy-push"
)

// TestClientAgainstCaddy runs the client against a real in-process Caddy
// with the example's routes (on other ports than the root package's tests,
// which may run at the same time).
func TestClientAgainstCaddy(t *testing.T) {
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: 2998})
	tester.InitServer(`{
	admin localhost:2998
	http_port 9081
	https_port 9444
	skip_install_trust
}
:9081 {
	push_publisher /publish
	push_subscriber /activity
}
`, "caddyfile")
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, &out, "http://localhost:9081", "client-test", 100*time.Millisecond, 3); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"Listener 1 received: Hello @", "Listener 2 received: Hello @", "Response code: 20"} {
		if strings.Count(text, want) != 3 {
			t.Fatalf("want 3 x %q in output:\n%s", want, text)
		}
	}
}
