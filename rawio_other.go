//go:build !unix

package caddypush

// rawIO says whether connections are written and waited on through their
// file descriptors: not here, where streams write through the connection
// (as on TLS) and parked streams are not written from the publisher.
const rawIO = false

func readable(uintptr) bool { return true }

func writeRaw(uintptr, []byte) (int, error) { return 0, nil }
