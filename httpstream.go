package caddypush

import (
	"crypto/rand"
	"net/http"

	"github.com/caddypush/caddy-push/pushstore"
)

// This file holds the transports that stream a plain HTTP response, framed
// as nchan frames them: multipart/mixed (a part per message, with the
// message's id as long-poll headers), chunked (one HTTP/1.1 chunk per
// message) and the raw stream (bodies followed by a separator).

// multipartSlot is where a message keeps its part headers (with its own
// id).
var multipartSlot = pushstore.NewMemoSlot()

type multipartWriter struct {
	httpStream
	boundary []byte // "\r\n--" + the boundary
	scratch  []byte
}

// boundaryChars are the characters of a multipart boundary: letters and
// digits only (nchan's also hold '/' and '.', which strict MIME parsers
// refuse unquoted).
const boundaryChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newBoundary returns a random multipart boundary of 32 boundaryChars.
func newBoundary() [32]byte {
	var b [32]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = boundaryChars[int(b[i])%len(boundaryChars)]
	}
	return b
}

// openMultipart writes the stream's head and its first boundary.
func (s *Subscriber) openMultipart(w http.ResponseWriter, r *http.Request) *multipartWriter {
	b := newBoundary()
	h := w.Header()
	h.Set("Content-Type", "multipart/mixed; boundary="+string(b[:]))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	boundary := append([]byte("\r\n--"), b[:]...)
	_, _ = w.Write(boundary[2:]) // "--B": no preamble
	return &multipartWriter{httpStream: startHTTPStream(w, r), boundary: boundary}
}

func (mw *multipartWriter) message(m *pushstore.Message, ids *runningID) error {
	var head []byte
	if ids == nil {
		head = m.Memo(multipartSlot, func(m *pushstore.Message) any {
			return appendPartHeaders(nil, lastModified(m.ID), []byte(etag(m.ID)), m.ContentType)
		}).([]byte)
	} else { // the subscriber's compound id, as a long-poll resumes from it
		mw.scratch = appendPartHeaders(mw.scratch[:0], lastModified(pushstore.MessageID{Time: ids.time}),
			ids.appendTags(nil), m.ContentType)
		head = mw.scratch
	}
	if _, err := mw.w.Write(head); err != nil {
		return err
	}
	if _, err := mw.w.Write(m.Body); err != nil {
		return err
	}
	_, err := mw.w.Write(mw.boundary)
	return err
}

// appendPartHeaders appends a part's headers and the blank line after
// them, starting with the CRLF that ends the boundary before.
func appendPartHeaders(b []byte, lastModified string, etag []byte, contentType string) []byte {
	b = append(append(append(b, "\r\nLast-Modified: "...), lastModified...), "\r\nEtag: "...)
	b = append(append(b, etag...), "\r\n"...)
	if contentType != "" {
		b = append(append(append(b, "Content-Type: "...), contentType...), "\r\n"...)
	}
	return append(b, "\r\n"...)
}

func (mw *multipartWriter) ping() error { return nil }

func (mw *multipartWriter) end(streamEnd) error {
	mw.boundEnd()
	_, err := mw.w.Write([]byte("--\r\n")) // closes the last boundary
	return err
}

// chunkedWriter sends each message as one chunk of an HTTP/1.1 response
// (net/http frames the chunks; each flush ends one).
type chunkedWriter struct {
	httpStream
}

func (s *Subscriber) openChunked(w http.ResponseWriter, r *http.Request) *chunkedWriter {
	h := w.Header()
	h["Content-Type"] = nil // as nchan: none, the bodies are what they are
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	return &chunkedWriter{startHTTPStream(w, r)}
}

func (cw *chunkedWriter) message(m *pushstore.Message, _ *runningID) error {
	if len(m.Body) == 0 {
		return nil // an empty chunk would end the response
	}
	if _, err := cw.w.Write(m.Body); err != nil {
		return err
	}
	return cw.flush() // a chunk per message
}

// canInline is false: each message is flushed as it is written.
func (cw *chunkedWriter) canInline() bool { return false }

func (cw *chunkedWriter) idle() {}

func (cw *chunkedWriter) ping() error         { return nil }
func (cw *chunkedWriter) end(streamEnd) error { cw.boundEnd(); return nil } // the last chunk ends the response

// rawWriter sends each body followed by a separator.
type rawWriter struct {
	httpStream
	separator []byte
}

func (s *Subscriber) openRaw(w http.ResponseWriter, r *http.Request) *rawWriter {
	h := w.Header()
	h["Content-Type"] = nil
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	return &rawWriter{httpStream: startHTTPStream(w, r), separator: []byte(s.rawSeparator)}
}

func (rw *rawWriter) message(m *pushstore.Message, _ *runningID) error {
	if _, err := rw.w.Write(m.Body); err != nil {
		return err
	}
	_, err := rw.w.Write(rw.separator)
	return err
}

func (rw *rawWriter) ping() error         { return nil }
func (rw *rawWriter) end(streamEnd) error { rw.boundEnd(); return nil } // as nchan: the response just ends
