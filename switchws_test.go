package caddypush

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/caddypush/caddy-push/internal/redistest"
)

// TestSwitchStoreEndsPublishingWebSockets opens a publishing WebSocket on
// the memory store, then reloads onto Redis: the old store is closed, so a
// frame the socket sends afterwards must either reach the subscribers of
// the new store or not be acknowledged (the socket ends, as subscriber
// streams do, and the client reconnects into the new store). Before the
// fix it was acknowledged as published into the closed memory store, and
// lost.
func TestSwitchStoreEndsPublishingWebSockets(t *testing.T) {
	t.Parallel()
	srv := redistest.Shared(t)
	p := runCaddy(t, redisSite)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := openWS(t, p.url+"/pub?id=pw", nil)
	if err := pub.Write(ctx, websocket.MessageText, []byte("on memory")); err != nil {
		t.Fatal(err)
	}
	if _, info := wsRead(t, pub); !strings.Contains(info, "queued messages: 1") {
		t.Fatalf("the answer to a frame on the memory store: %q", info)
	}
	p.switchToRedis(t, srv.Addr(), "switchws")
	got := make(chan resp, 1)
	getAsync(h1Client, p.url+"/sub?id=pw", got)
	waitFor(t, "the waiter on Redis", func() bool { return p.subscribers(t, "pw") == 1 })

	if err := pub.Write(ctx, websocket.MessageText, []byte("after the switch")); err != nil {
		return // the socket is gone: the client reconnects into the new store
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	typ, data, err := pub.Read(rctx)
	rcancel()
	if err != nil {
		return // closed without acknowledging the frame
	}
	select {
	case r := <-got:
		if r.body != "after the switch" {
			t.Fatalf("the waiter on Redis got %d %q", r.status, r.body)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the frame sent after the switch was acknowledged (%v %q), but the waiter on the new store never got it: "+
			"it was published into the closed memory store", typ, data)
	}
}
