package main

import (
	"net/url"
	"strings"
	"testing"
)

// Pushes as Centrifugo v6 writes them on uni_sse and uni_websocket,
// one per message and several joined by "\n".
func TestCentrifugoPushes(t *testing.T) {
	in := `{"connect":{"client":"c1","version":"6.9.1 OSS","subs":{"ch":{}},"ping":25,"session":"s"}}` + "\n" +
		`{}` + "\n" +
		`{"channel":"ch","pub":{"data":{"b":"pushbench seq=3 t=9 xx"},"offset":7}}` + "\n" +
		`{"channel":"ch","pub":{"data":{"b":"with \"quote\""}}}` + "\n" +
		`{"channel":"ch","pub":{"data":{"other":1}}}` + "\n" +
		`{"channel":"ch","join":{"info":{"client":"c2"}}}` + "\n" +
		`{"disconnect":{"code":3001,"reason":"shutdown"}}`
	var kinds []cfKind
	var bodies []string
	err := parseCentrifugoPushes([]byte(in), func(k cfKind, p *cfPush) {
		kinds = append(kinds, k)
		switch k {
		case cfConnected:
			if _, ok := p.Connect.Subs["ch"]; !ok || p.Connect.Client != "c1" {
				t.Errorf("connect %+v", p.Connect)
			}
		case cfPub:
			if p.Channel != "ch" {
				t.Errorf("channel %q", p.Channel)
			}
			b, ok := centrifugoBody(p.Pub.Data)
			bodies = append(bodies, map[bool]string{true: string(b), false: "-"}[ok])
		case cfDisconnect:
			if p.Disconnect.Code != 3001 {
				t.Errorf("disconnect %+v", p.Disconnect)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []cfKind{cfConnected, cfPing, cfPub, cfPub, cfPub, cfOther, cfDisconnect}
	if len(kinds) != len(want) {
		t.Fatalf("kinds %v", kinds)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("kinds %v, want %v", kinds, want)
		}
	}
	if strings.Join(bodies, "|") != `pushbench seq=3 t=9 xx|with "quote"|-` {
		t.Fatalf("bodies %q", bodies)
	}
	if err := parseCentrifugoPushes([]byte("{bad"), func(cfKind, *cfPush) {}); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestCentrifugoConnect(t *testing.T) {
	if got := string(centrifugoConnect("news")); got != `{"subs":{"news":{}}}` {
		t.Fatal(got)
	}
	u, err := url.Parse(centrifugoSSEURL("http://127.0.0.1:1/connection/uni_sse", "news"))
	if err != nil || u.Query().Get("cf_connect") != `{"subs":{"news":{}}}` {
		t.Fatal(u, err)
	}
}
