//go:build unix

package caddypush

import (
	"syscall"
	"unsafe"
)

// This file: the system calls of the writes that must not block and of
// waiting for a connection to be readable (directstream.go), on Unix.

// rawIO says whether connections are written and waited on through their
// file descriptors (see rawOf).
const rawIO = true

// readable reports, for a RawConn's Read, whether the connection has bytes
// to read or has ended (or failed: the read will see it), reading nothing.
func readable(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n > 0 || err != syscall.EAGAIN
}

// writeRaw is write(2) on a non-blocking socket, which returns at once,
// without telling the scheduler it entered a system call: a publisher
// writing to thousands of parked streams in a row does not have its
// processor handed to another thread while one write takes long.
func writeRaw(fd uintptr, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
