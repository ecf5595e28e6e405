package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file reads the server's CPU time and memory from /proc, and turns
// latency samples into percentiles.

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times on Linux.
const clockTicks = 100

// sample is the server's CPU time and resident memory at one moment.
type sample struct {
	cpu time.Duration
	rss int64 // bytes
}

// parsePids reads a comma-separated list of pids.
func parsePids(v string, into *[]int) error {
	for _, f := range strings.Split(v, ",") {
		pid, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || pid < 0 {
			return fmt.Errorf("bad pid %q", f)
		}
		if pid > 0 {
			*into = append(*into, pid)
		}
	}
	return nil
}

// readSample sums the samples of every pid; ok is false when there are
// none or one cannot be read.
func readSample(pids []int) (sample, bool) {
	var sum sample
	for _, pid := range pids {
		s, ok := readOne(pid)
		if !ok {
			return sample{}, false
		}
		sum.cpu += s.cpu
		sum.rss += s.rss
	}
	return sum, len(pids) > 0
}

func readOne(pid int) (sample, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return sample{}, false
	}
	// Fields after the command name, which is in parentheses: utime and
	// stime are fields 14 and 15 of the whole line.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return sample{}, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s := sample{cpu: time.Duration(ut+st) * time.Second / clockTicks}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, true
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			s.rss = kb << 10
		}
	}
	return s, true
}

// cpuPer records the server's CPU time per operation between two samples.
func cpuPer(res result, key string, a, b sample, ok bool, ops int) {
	if ok && ops > 0 {
		res[key] = float64((b.cpu - a.cpu).Microseconds()) / float64(ops)
	}
}

// percentiles adds p50, p99 and max of lat (milliseconds) under prefix.
func percentiles(res result, prefix string, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res[prefix+"p50_ms"] = ms(lat[len(lat)/2])
	res[prefix+"p99_ms"] = ms(lat[len(lat)*99/100])
	res[prefix+"max_ms"] = ms(lat[len(lat)-1])
}
