package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"testing"
)

// frame builds a server frame (unmasked unless mask is given).
func frame(fin bool, op byte, payload []byte, mask []byte) []byte {
	b := []byte{op}
	if fin {
		b[0] |= 0x80
	}
	m := byte(0)
	if mask != nil {
		m = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, m|byte(n))
	case n <= 0xFFFF:
		b = append(b, m|126, byte(n>>8), byte(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask != nil {
		b = append(b, mask...)
		p := append([]byte(nil), payload...)
		for i := range p {
			p[i] ^= mask[i&3]
		}
		return append(b, p...)
	}
	return append(b, payload...)
}

// unmask reads one client frame and checks that it is masked.
func unmask(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	c := &wsConn{r: r}
	var h [2]byte
	io.ReadFull(r, h[:])
	if h[1]&0x80 == 0 {
		t.Fatal("client frame not masked")
	}
	// put the header back through a fresh reader
	rest, _ := io.ReadAll(r)
	c.r = bufio.NewReader(bytes.NewReader(append(h[:], rest...)))
	_, op, p, err := c.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	return op, p
}

// The frame reader: one-frame messages, 16- and 64-bit lengths, a message
// in fragments with a ping between them (answered with a masked pong), a
// masked server frame, and a close (answered with a close, then io.EOF).
func TestWebSocketFrames(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 70000)
	mid := bytes.Repeat([]byte("m"), 300)
	var in []byte
	in = append(in, frame(true, wsText, []byte("hello"), nil)...)
	in = append(in, frame(true, wsBinary, mid, nil)...)
	in = append(in, frame(true, wsBinary, big, nil)...)
	in = append(in, frame(false, wsText, []byte("par"), nil)...)
	in = append(in, frame(true, wsPing, []byte("p1"), nil)...)
	in = append(in, frame(true, wsContinuation, []byte("ts"), []byte{1, 2, 3, 4})...)
	in = append(in, frame(true, wsClose, []byte{0x03, 0xE8, 'b', 'y', 'e'}, nil)...)
	var out bytes.Buffer
	c := &wsConn{r: bufio.NewReader(bytes.NewReader(in)), w: &out}
	for _, want := range []struct {
		op   byte
		data []byte
	}{{wsText, []byte("hello")}, {wsBinary, mid}, {wsBinary, big}, {wsText, []byte("parts")}} {
		op, m, err := c.readMessage()
		if err != nil || op != want.op || !bytes.Equal(m, want.data) {
			t.Fatalf("got %d %.20q %v, want %d %.20q", op, m, err, want.op, want.data)
		}
	}
	if op, m, err := c.readMessage(); err != io.EOF || op != wsClose || string(m[2:]) != "bye" {
		t.Fatalf("close: %d %q %v", op, m, err)
	}
	r := bufio.NewReader(&out)
	if op, p := unmask(t, bufio.NewReader(bytes.NewReader(frameBytes(t, r)))); op != wsPong || string(p) != "p1" {
		t.Fatalf("pong: %d %q", op, p)
	}
	if op, p := unmask(t, bufio.NewReader(bytes.NewReader(frameBytes(t, r)))); op != wsClose || !bytes.Equal(p, []byte{0x03, 0xE8}) {
		t.Fatalf("close reply: %d %q", op, p)
	}
}

// frameBytes cuts one masked client frame (payload < 126) off r.
func frameBytes(t *testing.T, r *bufio.Reader) []byte {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, 4+int(h[1]&0x7F))
	io.ReadFull(r, rest)
	return append(h[:], rest...)
}

func TestWebSocketErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"reserved bits":         {0xC1, 0x00},
		"long control frame":    append([]byte{0x89, 126, 0, 200}, make([]byte, 200)...),
		"orphan continuation":   frame(true, wsContinuation, []byte("x"), nil),
		"message in a fragment": append(frame(false, wsText, []byte("a"), nil), frame(true, wsText, []byte("b"), nil)...),
		"too large":             {0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0},
		"truncated":             {0x81, 5, 'a'},
	} {
		c := &wsConn{r: bufio.NewReader(bytes.NewReader(in)), w: io.Discard}
		if _, _, err := c.readMessage(); err == nil || err == io.EOF && name != "truncated" {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestWebSocketAccept(t *testing.T) {
	// RFC 6455, section 1.3
	if got := wsAccept("dGhlIHNhbXBsZSBub25jZQ=="); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatal(got)
	}
}

func TestNchanMeta(t *testing.T) {
	id, body, ok := parseNchanMeta([]byte("id: 1764265000:3\ncontent-type: text/plain\n\npushbench seq=1 t=2 x"))
	if !ok || id != "1764265000:3" || string(body) != "pushbench seq=1 t=2 x" {
		t.Fatalf("%q %q %v", id, body, ok)
	}
	if _, _, ok := parseNchanMeta([]byte("no header end")); ok {
		t.Fatal("parsed")
	}
}
