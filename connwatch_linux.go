package caddypush

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// canProbe says whether peerClosed can tell.
const canProbe = true

// peerClosed reports whether the client closed the connection (its TCP
// state is CLOSE_WAIT: its FIN came, or CLOSE: it reset it), reading
// nothing: bytes it sent before closing do not hide it.
func peerClosed(raw syscall.RawConn) bool {
	var state uint8
	err := raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
	})
	return err == nil && (state == tcpCloseWait || state == tcpClose)
}

// Linux's TCP states (include/net/tcp_states.h).
const (
	tcpClose     = 7
	tcpCloseWait = 8
)
