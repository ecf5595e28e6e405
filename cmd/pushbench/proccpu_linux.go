package main

import (
	"syscall"
	"unsafe"
)

// processCPU reads a process's CPU time (every thread, live or exited)
// from its POSIX CPU clock, clock_gettime(MAKE_PROCESS_CPUCLOCK(pid,
// CPUCLOCK_SCHED)): nanoseconds, where /proc/PID/stat's utime and stime
// are each truncated to 10 ms clock ticks.
func processCPU(pid int) (float64, bool) {
	clk := (^uintptr(pid) << 3) | 2 // CPUCLOCK_SCHED, process-wide
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clk, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, false
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9, true
}
