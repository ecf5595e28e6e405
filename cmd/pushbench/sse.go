package main

// EventSource (Server-Sent Events) client side: a line parser for the
// text/event-stream format, as nchan and Centrifugo write it.
//
//	id: 1764265000:0        nchan: <time>:<tag>, echoed in Last-Event-ID
//	event: ping             a keep-alive (nchan), no message
//	data: <line>            one or more; joined with "\n"
//	                        a blank line ends the event
//	: comment               a keep-alive
//
// Lines end in LF or CRLF (a lone CR, which the format also allows, is not
// split on: neither server writes it).

import (
	"bufio"
	"bytes"
	"errors"
)

// sseEvent is one dispatched event.
type sseEvent struct {
	id    string // the last event id (it carries over, as in a browser)
	event string // "" for the default "message"
	data  []byte
}

// sseParser collects the fields of the event being read.
type sseParser struct {
	lastID   string
	event    string
	data     []byte
	hasData  bool
	comments int // keep-alive comment lines seen
}

// line feeds one line without its line ending; ok is true when a blank
// line dispatches an event with data. An event without data lines is
// dropped, as the EventSource specification says.
func (p *sseParser) line(l []byte) (ev sseEvent, ok bool) {
	if len(l) == 0 {
		if p.hasData {
			ev = sseEvent{id: p.lastID, event: p.event, data: p.data}
			ok = true
		}
		p.event, p.data, p.hasData = "", nil, false
		return ev, ok
	}
	if l[0] == ':' {
		p.comments++
		return ev, false
	}
	field, value := l, []byte(nil)
	if i := bytes.IndexByte(l, ':'); i >= 0 {
		field, value = l[:i], l[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(field) {
	case "data":
		if p.hasData {
			p.data = append(p.data, '\n')
		}
		p.data = append(p.data, value...)
		p.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			p.lastID = string(value)
		}
	case "event":
		p.event = string(value)
	}
	return ev, false
}

// keepAlive reports whether a dispatched event is a keep-alive rather
// than a message: nchan's "event: ping".
func (ev sseEvent) keepAlive() bool { return ev.event == "ping" }

var errLineTooLong = errors.New("event-stream line over 1 MiB")

// readSSE reads br until an error, calling onEvent for every event with
// data.
func readSSE(br *bufio.Reader, p *sseParser, onEvent func(sseEvent)) error {
	var long []byte
	for {
		l, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long, l...)
			if len(long) > 1<<20 {
				return errLineTooLong
			}
			continue
		}
		if err != nil {
			return err
		}
		if long != nil {
			l = append(long, l...)
			long = nil
		}
		l = bytes.TrimSuffix(l[:len(l)-1], []byte{'\r'})
		if ev, ok := p.line(l); ok {
			onEvent(ev)
		}
	}
}
