package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddypush/caddy-push"
)

// TestScenariosAgainstCaddy runs every scenario briefly against a real
// in-process Caddy (its own ports, apart from the other packages' tests)
// and checks that nothing is lost or duplicated.
func TestScenariosAgainstCaddy(t *testing.T) {
	tester := caddytest.NewTester(t).WithDefaultOverrides(caddytest.Config{AdminPort: 2997})
	tester.InitServer(`{
	admin localhost:2997
	http_port 9083
	https_port 9445
	skip_install_trust
}
:9083 {
	push_publisher /pub {
		max_message_buffer_length 500
	}
	push_subscriber /sub
	push_subscriber /sub2
}
`, "caddyfile")
	base := config{
		// Two subscriber URLs: the subscribers are spread over both.
		pub: "http://localhost:9083/pub?id=%s", sub: "http://localhost:9083/sub?id=%s,http://localhost:9083/sub2?id=%s",
		subs: 20, rounds: 10, publishers: 4, channels: 3, duration: 500 * time.Millisecond,
		hold: 100 * time.Millisecond, window: 50, size: 64, pids: []int{os.Getpid()}, run: "t",
	}
	for name, run := range map[string]func(context.Context, *config, *client) (result, error){
		"fanout": fanout, "publish": publishLoad, "idle": idle, "stream": stream,
	} {
		t.Run(name, func(t *testing.T) {
			c := base
			c.run = "t-" + name
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := run(ctx, &c, newClient(64))
			if err != nil {
				t.Fatalf("%v (%v)", err, res)
			}
			if res["lost"] != nil && (res["lost"] != uint64(0) || res["duplicated"] != uint64(0)) {
				t.Fatalf("lost or duplicated: %v", res)
			}
			if v, ok := res["delivered"].(uint64); ok && v == 0 {
				t.Fatalf("nothing delivered: %v", res)
			}
			if v, ok := res["publishes"].(int64); ok && v == 0 {
				t.Fatalf("nothing published: %v", res)
			}
			t.Logf("%v", res)
		})
	}
}
