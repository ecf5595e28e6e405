package caddypush

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"regexp"
	"strings"
	"testing"
)

// TestLongPollMultipart: a long-poll of a location with
// longpoll_multipart_response takes every message waiting for it in one
// answer, as nchan's does (wire recorded from nginx+nchan 1.3.6): two or
// more as a multipart/mixed body, a part per message with its
// Content-Type, or with `raw` the bodies each followed by a newline; the
// answer's Last-Modified and Etag are the last message's, so the next poll
// resumes after it and misses nothing; one message is a long-poll's usual
// answer; a long-poll that waits is answered with what was published, 410
// when the channel is deleted, or 304 at its timeout.
func TestLongPollMultipart(t *testing.T) { forEachStore(t, testLongPollMultipart) }

func testLongPollMultipart(t *testing.T) {
	startMain(t)
	ch := chanName(t, "a")
	// The second is past bigBody: written as it is, not copied.
	msgs := []struct{ body, ct string }{{"a", "text/plain"}, {strings.Repeat("b", bigBody+1), ""}, {"", "text/plain"},
		{"l1\r\n\r\nl2\n", "application/json"}}
	for _, m := range msgs {
		hdr := []string{"Content-Type", m.ct}
		if r := do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader(m.body), hdr...); r.status != 201 && r.status != 202 {
			t.Fatalf("publish: %d", r.status)
		}
	}
	// Each message's id, as a long-poll of a plain location gives it.
	var ids []cursor
	var cur cursor
	for range msgs {
		r := do(t, h1Client, "GET", base+"/s/lp?id="+ch, nil, cur.headers()...)
		cur = r.cursor()
		ids = append(ids, cur)
	}

	r := do(t, h1Client, "GET", base+"/s/lpmp?id="+ch, nil)
	boundary := multipartBoundary(t, r)
	want := ""
	for _, m := range msgs {
		want += "--" + boundary + "\r\n"
		if m.ct != "" {
			want += "Content-Type: " + m.ct + "\r\n"
		}
		want += "\r\n" + m.body + "\r\n"
	}
	want += "--" + boundary + "--\r\n"
	if r.body != want {
		t.Fatalf("multipart body:\n got  %q\n want %q", r.body, want)
	}
	if r.cursor() != ids[3] || r.header.Get("Content-Length") != fmt.Sprint(len(want)) {
		t.Fatalf("answer's id %+v (want the last message's, %+v), Content-Length %q",
			r.cursor(), ids[3], r.header.Get("Content-Length"))
	}
	// A MIME reader reads it back: the bodies and their types.
	mr := multipart.NewReader(strings.NewReader(r.body), boundary)
	for i, m := range msgs {
		p, err := mr.NextRawPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		b, _ := io.ReadAll(p)
		if string(b) != m.body || p.Header.Get("Content-Type") != m.ct {
			t.Fatalf("part %d: %q of type %q, want %q of type %q", i, b, p.Header.Get("Content-Type"), m.body, m.ct)
		}
	}
	if _, err := mr.NextRawPart(); err != io.EOF {
		t.Fatalf("after the last part: %v", err)
	}

	// From the second message's id: the last two.
	r = do(t, h1Client, "GET", base+"/s/lpmp?id="+ch, nil, ids[1].headers()...)
	if n := strings.Count(r.body, "--"+multipartBoundary(t, r)+"\r\n"); n != 2 || r.cursor() != ids[3] {
		t.Fatalf("resumed after the second: %d parts, id %+v", n, r.cursor())
	}
	// From the third's: one message, a long-poll's usual answer.
	r = do(t, h1Client, "GET", base+"/s/lpmp?id="+ch, nil, ids[2].headers()...)
	if r.status != 200 || r.body != msgs[3].body || r.header.Get("Content-Type") != msgs[3].ct || r.cursor() != ids[3] {
		t.Fatalf("one message: %d %q %q %+v", r.status, r.body, r.header.Get("Content-Type"), r.cursor())
	}
	// From the last: it waits, and gets what is published.
	waiting := make(chan resp, 1)
	getAsync(h1Client, base+"/s/lpmp?id="+ch, waiting, ids[3].headers()...)
	waitFor(t, "the long-poll waiting", func() bool { return waiters(t, "/"+ch) == 1 })
	publish(t, "/pub", ch, "x")
	if r := <-waiting; r.status != 200 || r.body != "x" || r.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("the waiting long-poll: %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
	}

	// A DELETE of the channel ends a waiting poll with 410, as any long-poll.
	getAsync(h1Client, base+"/s/lpmp?id="+ch, waiting, do(t, h1Client, "GET", base+"/s/lp?id="+ch, nil,
		ids[3].headers()...).cursor().headers()...)
	waitFor(t, "the long-poll waiting again", func() bool { return waiters(t, "/"+ch) == 1 })
	if r := do(t, h1Client, "DELETE", base+"/pub?id="+ch, nil); r.status != 200 {
		t.Fatalf("DELETE: %d", r.status)
	}
	if r := <-waiting; r.status != 410 {
		t.Fatalf("the waiting long-poll at the DELETE: %d %q", r.status, r.body)
	}
	for _, m := range append(msgs, struct{ body, ct string }{"x", "text/plain"}) {
		do(t, h1Client, "POST", base+"/pub?id="+ch, strings.NewReader(m.body), "Content-Type", m.ct)
	}

	// raw: the bodies, each followed by a newline, and no Content-Type.
	r = do(t, h1Client, "GET", base+"/s/lpraw?id="+ch, nil)
	raw := ""
	for _, m := range msgs {
		raw += m.body + "\n"
	}
	if raw += "x\n"; r.body != raw || r.header["Content-Type"] != nil || r.header.Get("Content-Length") != fmt.Sprint(len(raw)) {
		t.Fatalf("raw: %q, Content-Type %q", r.body, r.header["Content-Type"])
	}
	// Nothing new within its timeout (1 s here): 304, as any long-poll.
	if r := do(t, h1Client, "GET", base+"/s/lpraw?id="+ch, nil, r.cursor().headers()...); r.status != 304 || r.body != "" {
		t.Fatalf("the timeout: %d %q", r.status, r.body)
	}

	// Several channels: every message of both, in publication order, with
	// the compound id the last of them has for one-message polls.
	a, b := chanName(t, "ma"), chanName(t, "mb")
	for _, p := range [][2]string{{b, "b1"}, {a, "a1"}, {b, "b2"}, {a, "a2"}} {
		publish(t, "/pub", p[0], p[1])
	}
	cur = cursor{}
	for range 4 {
		cur = do(t, h1Client, "GET", base+"/s/split?ids="+a+","+b, nil, cur.headers()...).cursor()
	}
	r = do(t, h1Client, "GET", base+"/s/lpmpx?ids="+a+","+b, nil)
	bd := multipartBoundary(t, r)
	if want := strings.NewReplacer("B", bd).Replace("--B\r\nContent-Type: text/plain\r\n\r\nb1\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\na1\r\n--B\r\nContent-Type: text/plain\r\n\r\nb2\r\n" +
		"--B\r\nContent-Type: text/plain\r\n\r\na2\r\n--B--\r\n"); r.body != want || r.cursor() != cur {
		t.Fatalf("several channels:\n got  %q, id %+v\n want %q, id %+v", r.body, r.cursor(), want, cur)
	}
}

// multipartBoundary checks r is a 200 multipart/mixed answer and returns
// its boundary: 32 letters and digits.
func multipartBoundary(t *testing.T, r resp) string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	if r.status != 200 || err != nil || mt != "multipart/mixed" || !regexp.MustCompile(`^[A-Za-z0-9]{32}$`).MatchString(params["boundary"]) {
		t.Fatalf("want a multipart/mixed answer: %d %q (%v)", r.status, r.header.Get("Content-Type"), err)
	}
	return params["boundary"]
}
