//go:build !linux

package caddypush

import "syscall"

// canProbe says whether peerClosed can tell: only on Linux, which gives a
// connection's TCP state.
const canProbe = false

func peerClosed(syscall.RawConn) bool { return false }
