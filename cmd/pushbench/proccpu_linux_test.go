package main

import (
	"math"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestServerCPUIsFinerThanTicks: sampleServer reads each process's CPU
// time from its POSIX CPU clock, in nanoseconds. It read /proc/PID/stat's
// utime and stime, each cut to 10 ms clock ticks, which moved the CPU of a
// Redis fan-out window (0.24-0.74 s over three processes) by several
// percent.
func TestServerCPUIsFinerThanTicks(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	finer := false
	for i := 0; i < 5 && !finer; i++ {
		time.Sleep(13 * time.Millisecond) // let it burn some CPU
		_ = cmd.Process.Signal(syscall.SIGSTOP)
		s := sampleServer([]int{pid}, false)
		exact, ok := processCPU(pid)
		_ = cmd.Process.Signal(syscall.SIGCONT)
		if !ok {
			t.Fatal("no CPU clock for a child process")
		}
		if math.Abs(s.cpuSec-exact) > 1e-3 {
			t.Fatalf("sampleServer: %.6f s of CPU; the process's CPU clock: %.6f s", s.cpuSec, exact)
		}
		_, frac := math.Modf(exact * 100)
		finer = frac > 1e-6 && frac < 1-1e-6
	}
	if !finer {
		t.Fatal("every CPU reading was a whole number of 10 ms ticks")
	}
}
