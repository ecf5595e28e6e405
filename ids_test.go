package caddypush

import (
	"fmt"
	"testing"

	"github.com/caddypush/caddy-push/redisstore"
)

// TestIDsContinueAcrossIncarnations: over HTTP, on both stores, a channel
// deleted and published to again within one second (and, on Redis, one
// whose keys Redis lost) continues its ids, so a subscriber holding the
// old channel's cursor gets the new messages instead of waiting past them.
func TestIDsContinueAcrossIncarnations(t *testing.T) {
	forEachStore(t, testIDsContinueAcrossIncarnations)
}

func testIDsContinueAcrossIncarnations(t *testing.T) {
	startMain(t)
	ends := map[string]func(ch string){
		"delete": func(ch string) {
			if r := do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil); r.status != 200 {
				t.Fatalf("DELETE: %d", r.status)
			}
		},
	}
	if rs, ok := current.store.(*redisstore.Store); ok {
		ends["keys lost"] = func(ch string) { // as a Redis restarted without its data
			if err := rs.Client().Del(t.Context(), rs.Keys("/"+ch)...).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, end := range ends {
		t.Run(name, func(t *testing.T) {
			for try := 0; ; try++ {
				ch := chanName(t, fmt.Sprint(try))
				for i := range 5 {
					publish(t, "/pub", ch, fmt.Sprint("old", i))
				}
				var old cursor
				for range 5 {
					old = do(t, h1Client, "GET", base+"/sub?id="+ch, nil, old.headers()...).cursor()
				}
				end(ch)
				for i := range 3 {
					publish(t, "/pub", ch, fmt.Sprint("new", i))
				}
				first := do(t, h1Client, "GET", base+"/sub?id="+ch, nil)
				if first.header.Get("Last-Modified") != old.lastModified && try < 20 {
					continue // the second turned: try again within one
				}
				if first.body != "new0" {
					t.Fatalf("the new channel's first message is %q", first.body)
				}
				r := do(t, h1Client, "GET", base+"/poll?id="+ch, nil, old.headers()...)
				if r.status != 200 || r.body != "new0" {
					t.Fatalf("with the old channel's cursor %+v: %d %q, want new0 (its id %+v)",
						old, r.status, r.body, first.cursor())
				}
				return
			}
		})
	}
}
