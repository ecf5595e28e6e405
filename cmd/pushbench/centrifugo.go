package main

// Centrifugo's unidirectional protocol (v6), as far as the load tool needs
// it:
//
//   - connect: a ConnectRequest, {"subs":{"<channel>":{}}}, sent as the
//     first WebSocket message (uni_websocket) or in the cf_connect query
//     parameter (uni_sse); anonymous, no token;
//   - pushes, one JSON object per WebSocket message or per "data:" line
//     (several joined by "\n" when join_push_messages is on):
//     {"connect":{"client":...,"subs":{"<channel>":{...}}}} first, then
//     {"channel":"<channel>","pub":{"data":<JSON>,"offset":N}} for every
//     publication; {} is a ping; {"disconnect":{...}} ends the connection;
//   - publish: POST <api>/publish {"channel":...,"data":{"b":"<body>"}} with
//     the X-API-Key header; the data must be JSON, so the text body
//     pushbench measures with travels as the string "b".

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// centrifugoConnect is the connect request subscribing to channels.
func centrifugoConnect(channels ...string) []byte {
	subs := map[string]struct{}{}
	for _, ch := range channels {
		subs[ch] = struct{}{}
	}
	b, _ := json.Marshal(map[string]any{"subs": subs})
	return b
}

// centrifugoSSEURL is the uni_sse endpoint with the connect request in
// cf_connect.
func centrifugoSSEURL(endpoint, channel string) string {
	sep := "?"
	if strings.Contains(endpoint, "?") {
		sep = "&"
	}
	return endpoint + sep + "cf_connect=" + url.QueryEscape(string(centrifugoConnect(channel)))
}

// cfPush is one push, with only the fields the tool reads.
type cfPush struct {
	Connect *struct {
		Client string                     `json:"client"`
		Subs   map[string]json.RawMessage `json:"subs"`
	} `json:"connect"`
	Channel    string         `json:"channel"`
	Pub        *cfPublication `json:"pub"`
	Disconnect *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"disconnect"`
}

// cfPublication is a publication.
type cfPublication struct {
	Data   json.RawMessage `json:"data"`
	Offset uint64          `json:"offset"`
}

// cfKind names what a push is.
type cfKind int

const (
	cfOther      cfKind = iota // join, leave, subscribe... (ignored)
	cfPing                     // {}
	cfConnected                // the connect reply
	cfPub                      // a publication
	cfDisconnect               // the server ends the connection
)

// parseCentrifugoPushes parses one WebSocket message or SSE data field,
// which holds one push or several joined by "\n", calling each for every
// push.
func parseCentrifugoPushes(b []byte, each func(cfKind, *cfPush)) error {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var p cfPush
		if fastPub(line, &p) {
			each(cfPub, &p)
			continue
		}
		if err := json.Unmarshal(line, &p); err != nil {
			return fmt.Errorf("centrifugo push %q: %w", truncate(line, 80), err)
		}
		switch {
		case p.Pub != nil:
			each(cfPub, &p)
		case p.Connect != nil:
			each(cfConnected, &p)
		case p.Disconnect != nil:
			each(cfDisconnect, &p)
		case bytes.Equal(line, []byte("{}")):
			each(cfPing, &p)
		default:
			each(cfOther, &p)
		}
	}
	return nil
}

// fastPub recognises, without a JSON decoder, the publication pushes
// pushbench itself causes, as Centrifugo writes them:
// {"channel":"CH","pub":{"data":{"b":"BODY"}...}} where CH and BODY hold no
// quote or backslash. Anything else is left to encoding/json.
func fastPub(line []byte, p *cfPush) bool {
	const pre, mid = `{"channel":"`, `","pub":{"data":{"b":"`
	if !bytes.HasPrefix(line, []byte(pre)) {
		return false
	}
	rest := line[len(pre):]
	i := bytes.IndexByte(rest, '"')
	if i < 0 || !bytes.HasPrefix(rest[i:], []byte(mid)) {
		return false
	}
	ch := rest[:i]
	rest = rest[i+len(mid):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 || bytes.IndexByte(ch, '\\') >= 0 || !bytes.HasPrefix(rest[j:], []byte(`"}`)) {
		return false
	}
	p.Channel = string(ch)
	p.Pub = &cfPublication{Data: line[len(pre)+i+len(mid)-6 : len(pre)+i+len(mid)+j+2]}
	return true
}

// centrifugoBody returns the text body a publication's data carries.
func centrifugoBody(data json.RawMessage) ([]byte, bool) {
	const pre = `{"b":"`
	if bytes.HasPrefix(data, []byte(pre)) && bytes.HasSuffix(data, []byte(`"}`)) {
		if b := data[len(pre) : len(data)-2]; bytes.IndexByte(b, '"') < 0 && bytes.IndexByte(b, '\\') < 0 {
			return b, true
		}
	}
	var d struct {
		B string `json:"b"`
	}
	if json.Unmarshal(data, &d) != nil || d.B == "" {
		return nil, false
	}
	return []byte(d.B), true
}

// publishCentrifugo publishes body to channel through the HTTP API; it
// returns 200 only when Centrifugo answers without an error.
func publishCentrifugo(ctx context.Context, c httpConn, api, key, channel string, body []byte) (int, error) {
	data, _ := json.Marshal(map[string]any{"channel": channel, "data": map[string]string{"b": string(body)}})
	hdr := []string{"Content-Type", "application/json"}
	if key != "" {
		hdr = append(hdr, "X-API-Key", key)
	}
	r, err := c.do(ctx, "POST", api, hdr, data, nil)
	if err != nil {
		return 0, err
	}
	if r.status == 200 && bytes.Contains(r.body, []byte(`"error"`)) {
		return 500, fmt.Errorf("centrifugo publish: %s", truncate(r.body, 200))
	}
	return r.status, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
