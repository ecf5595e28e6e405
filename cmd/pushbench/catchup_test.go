package main

import (
	"fmt"
	"testing"
)

// TestAnswerBodies splits multipart answers as nchan writes them, with a
// boundary holding '/' and '.' (which a MIME parser refuses unquoted: the
// first catchup runs against nchan read such answers as one body), parts
// with and without a Content-Type, and an empty body; a plain answer is
// one body.
func TestAnswerBodies(t *testing.T) {
	const b = "RDxq6RtT1j1xZAe.4yydM4LGg/KFq4oI"
	body := "--" + b + "\r\nContent-Type: text/plain\r\n\r\none\r\n--" + b + "\r\n\r\n\r\n--" + b + "\r\n\r\nthree\r\n--" + b + "--\r\n"
	parts, multipart, err := answerBodies(response{ctype: "multipart/mixed; boundary=" + b, body: []byte(body)})
	if err != nil || !multipart || fmt.Sprintf("%q", parts) != `["one" "" "three"]` {
		t.Fatalf("parts %q, multipart %v, %v", parts, multipart, err)
	}
	if _, _, err := answerBodies(response{ctype: "multipart/mixed; boundary=" + b, body: []byte(body[:40])}); err == nil {
		t.Fatal("a cut answer was read")
	}
	parts, multipart, err = answerBodies(response{ctype: "text/plain", body: []byte("plain")})
	if err != nil || multipart || len(parts) != 1 || string(parts[0]) != "plain" {
		t.Fatalf("plain answer: %q %v %v", parts, multipart, err)
	}
}
