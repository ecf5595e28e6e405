package main

// The HTTP/1.1 client side of the load tool. Two interchangeable back ends
// for request/response traffic (publish, long-poll, channel info), each used
// as "one connection per goroutine":
//
//	raw     a minimal keep-alive HTTP/1.1 client on net.Conn + bufio (the
//	        default: much less client CPU than net/http, which matters when
//	        the load tool shares 2 cores with the server);
//	nethttp Go's net/http Transport, for cross-checks.
//
// Streaming subscribers (EventSource, WebSocket) always use openStream, a raw
// GET whose response body is then read as it arrives.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type response struct {
	status  int
	body    []byte
	lastMod string
	etag    string
	ctype   string // Content-Type
	recvT   int64  // mono() when the full body had been read
}

type httpConn interface {
	// do sends one request; hdr is a flat list of name, value pairs.
	do(ctx context.Context, method, url string, hdr []string, body []byte, onWritten func()) (response, error)
	close()
}

type connFactory func() httpConn

// dialFunc opens a TCP connection to host:port.
type dialFunc func(ctx context.Context, addr string) (net.Conn, error)

// newDialer returns a dialer that allows at most maxDials connects at once
// (thousands of subscribers connecting together would overflow the
// server's listen backlog).
func newDialer(maxDials int) dialFunc {
	sem := make(chan struct{}, maxDials)
	return func(ctx context.Context, addr string) (net.Conn, error) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		defer func() { <-sem }()
		d := net.Dialer{Timeout: 15 * time.Second, KeepAlive: -1}
		return d.DialContext(ctx, "tcp", addr)
	}
}

func makeFactory(kind string, dial dialFunc) (connFactory, error) {
	switch kind {
	case "raw":
		return func() httpConn { return &rawConn{dial: dial} }, nil
	case "nethttp":
		tr := &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dial(ctx, addr)
			},
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: 1 << 20,
			IdleConnTimeout:     5 * time.Minute,
			DisableCompression:  true,
		}
		c := &http.Client{Transport: tr}
		return func() httpConn { return &stdConn{c: c} }, nil
	}
	return nil, fmt.Errorf("unknown -client %q (raw | nethttp)", kind)
}

// hostPort returns the host:port and request URI of an http:// or ws:// URL.
func hostPort(u string) (host, uri string, err error) {
	pu, err := url.Parse(u)
	if err != nil {
		return "", "", err
	}
	if pu.Scheme != "http" && pu.Scheme != "ws" {
		return "", "", fmt.Errorf("only http:// and ws:// URLs are supported: %s", u)
	}
	host = pu.Host
	if pu.Port() == "" {
		host += ":80"
	}
	return host, pu.RequestURI(), nil
}

// ---------------------------------------------------------------- net/http

type stdConn struct{ c *http.Client }

func (s *stdConn) close() {}

func (s *stdConn) do(ctx context.Context, method, u string, hdr []string, body []byte, onWritten func()) (response, error) {
	if onWritten != nil {
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { onWritten() },
		})
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.c.Do(req)
	if err != nil {
		return response{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return response{status: resp.StatusCode, body: b, recvT: mono(),
		lastMod: resp.Header.Get("Last-Modified"), etag: resp.Header.Get("Etag"), ctype: resp.Header.Get("Content-Type")}, err
}

// ---------------------------------------------------------------- raw

type rawConn struct {
	dial    dialFunc
	c       net.Conn
	br      *bufio.Reader
	wb      []byte
	lastURL string
	host    string
	uri     string
}

func (r *rawConn) close() {
	if r.c != nil {
		r.c.Close()
		r.c = nil
	}
}

var errReused = errors.New("connection closed before response")

func (r *rawConn) do(ctx context.Context, method, u string, hdr []string, body []byte, onWritten func()) (response, error) {
	if u != r.lastURL {
		host, uri, err := hostPort(u)
		if err != nil {
			return response{}, err
		}
		if r.c != nil && host != r.host {
			r.close()
		}
		r.lastURL, r.host, r.uri = u, host, uri
	}
	for attempt := 0; ; attempt++ {
		reused := r.c != nil
		resp, err := r.once(ctx, method, r.uri, hdr, body, onWritten)
		if err == nil {
			return resp, nil
		}
		r.close()
		// a kept-alive connection the server had already closed: retry once on a new one
		if reused && attempt == 0 && errors.Is(err, errReused) && ctx.Err() == nil {
			continue
		}
		if ctx.Err() != nil {
			return response{}, ctx.Err()
		}
		return response{}, err
	}
}

// appendRequest appends an HTTP/1.1 request head (and body) to w.
func appendRequest(w []byte, method, host, uri string, hdr []string, body []byte) []byte {
	w = append(w, method...)
	w = append(w, ' ')
	w = append(w, uri...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, host...)
	w = append(w, "\r\nUser-Agent: pushbench\r\n"...)
	for i := 0; i+1 < len(hdr); i += 2 {
		w = append(w, hdr[i]...)
		w = append(w, ": "...)
		w = append(w, hdr[i+1]...)
		w = append(w, "\r\n"...)
	}
	if body != nil || method == "POST" || method == "PUT" {
		w = append(w, "Content-Length: "...)
		w = strconv.AppendInt(w, int64(len(body)), 10)
		w = append(w, "\r\n"...)
	}
	w = append(w, "\r\n"...)
	return append(w, body...)
}

func (r *rawConn) once(ctx context.Context, method, uri string, hdr []string, body []byte, onWritten func()) (response, error) {
	if r.c == nil {
		c, err := r.dial(ctx, r.host)
		if err != nil {
			return response{}, err
		}
		r.c = c
		if r.br == nil {
			r.br = bufio.NewReaderSize(c, 4096)
		} else {
			r.br.Reset(c)
		}
	}
	c := r.c
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r.wb = appendRequest(r.wb[:0], method, r.host, uri, hdr, body)
	if _, err := r.c.Write(r.wb); err != nil {
		return response{}, errReused
	}
	if onWritten != nil {
		onWritten()
	}
	return r.readResponse(method)
}

func (r *rawConn) readResponse(method string) (response, error) {
	var resp response
	line, err := r.br.ReadSlice('\n')
	if err != nil {
		if len(line) == 0 && (err == io.EOF || errors.Is(err, net.ErrClosed) || isReset(err)) {
			return resp, errReused
		}
		return resp, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return resp, fmt.Errorf("bad status line %q", line)
	}
	http10 := line[7] == '0'
	resp.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return resp, fmt.Errorf("bad status line %q", line)
	}
	clen := int64(-1)
	chunked, closeConn, keepAlive := false, false, false
	for {
		line, err = r.br.ReadSlice('\n')
		if err != nil {
			return resp, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 {
			continue
		}
		name := line[:i]
		val := strings.TrimSpace(string(line[i+1:]))
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			clen, err = strconv.ParseInt(val, 10, 64)
			if err != nil {
				return resp, fmt.Errorf("bad Content-Length %q", val)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = strings.Contains(strings.ToLower(val), "chunked")
		case bytes.EqualFold(name, []byte("Connection")):
			v := strings.ToLower(val)
			closeConn = strings.Contains(v, "close")
			keepAlive = strings.Contains(v, "keep-alive")
		case bytes.EqualFold(name, []byte("Last-Modified")):
			resp.lastMod = val
		case bytes.EqualFold(name, []byte("Etag")):
			resp.etag = val
		case bytes.EqualFold(name, []byte("Content-Type")):
			resp.ctype = val
		}
	}
	if resp.status >= 100 && resp.status < 200 {
		return r.readResponse(method) // skip 1xx (e.g. 100 Continue)
	}
	noBody := method == "HEAD" || resp.status == 204 || resp.status == 304
	switch {
	case noBody:
	case chunked:
		if resp.body, err = readChunked(r.br); err != nil {
			return resp, err
		}
	case clen >= 0:
		resp.body = make([]byte, clen)
		if _, err := io.ReadFull(r.br, resp.body); err != nil {
			return resp, err
		}
	default: // body until close
		resp.body, err = io.ReadAll(r.br)
		closeConn = true
		if err != nil {
			return resp, err
		}
	}
	resp.recvT = mono()
	if closeConn || (http10 && !keepAlive) {
		r.close()
	}
	return resp, nil
}

// readChunked reads a chunked body and its trailers (net/http/httputil's
// chunked reader leaves the final CRLF unread, which would break the next
// response on a kept-alive connection).
func readChunked(br *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return body, err
		}
		s := strings.TrimSpace(string(line))
		if j := strings.IndexByte(s, ';'); j >= 0 {
			s = s[:j]
		}
		n, err := strconv.ParseInt(s, 16, 64)
		if err != nil || n < 0 {
			return body, fmt.Errorf("bad chunk size %q", s)
		}
		if n == 0 {
			for { // trailers, up to the blank line
				line, err = br.ReadSlice('\n')
				if err != nil {
					return body, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return body, nil
				}
			}
		}
		start := len(body)
		body = append(body, make([]byte, n)...)
		if _, err := io.ReadFull(br, body[start:]); err != nil {
			return body, err
		}
		if _, err := br.Discard(2); err != nil {
			return body, err
		}
	}
}

func isReset(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

// ---------------------------------------------------------------- streams

// head is a response's status line and headers, for the cold path of
// opening a stream (the long-poll hot path parses inline above).
type head struct {
	status int
	hdr    map[string]string // lower-case name -> value (last one wins)
}

func (h head) get(name string) string { return h.hdr[strings.ToLower(name)] }

// readHead reads a status line and headers.
func readHead(br *bufio.Reader) (head, error) {
	h := head{hdr: map[string]string{}}
	line, err := br.ReadString('\n')
	if err != nil {
		return h, err
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return h, fmt.Errorf("bad status line %q", line)
	}
	if h.status, err = strconv.Atoi(f[1]); err != nil {
		return h, fmt.Errorf("bad status line %q", line)
	}
	for {
		line, err = br.ReadString('\n')
		if err != nil {
			return h, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return h, nil
		}
		if name, val, ok := strings.Cut(line, ":"); ok {
			h.hdr[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(val)
		}
	}
}

// stream is an open streaming response: the connection and a reader of the
// decoded body (chunked transfer encoding removed).
type stream struct {
	c    net.Conn
	stop func() bool // unregisters the close on ctx's end
	head head
	br   *bufio.Reader // the connection's reader (for WebSocket frames)
	body *bufio.Reader // the response body (for EventSource)
}

func (s *stream) close() {
	s.stop()
	s.c.Close()
}

// openStream dials, sends one GET with the headers hdr and reads the
// response head. The connection is closed when ctx ends.
func openStream(ctx context.Context, dial dialFunc, u string, hdr []string) (*stream, error) {
	host, uri, err := hostPort(u)
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx, host)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	if _, err := c.Write(appendRequest(nil, "GET", host, uri, hdr, nil)); err != nil {
		stop()
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	h, err := readHead(br)
	if err != nil {
		stop()
		c.Close()
		return nil, err
	}
	s := &stream{c: c, stop: stop, head: h, br: br, body: br}
	switch {
	case strings.Contains(strings.ToLower(h.get("Transfer-Encoding")), "chunked"):
		s.body = bufio.NewReaderSize(httputil.NewChunkedReader(br), 4096)
	case h.get("Content-Length") != "":
		n, _ := strconv.ParseInt(h.get("Content-Length"), 10, 64)
		s.body = bufio.NewReader(io.LimitReader(br, n))
	}
	return s, nil
}
