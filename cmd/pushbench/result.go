package main

// One run's result: an ordered list of key/values printed as one JSON line
// (and appended to -json-out). Every scenario writes the same key names for
// the same figure, so bench/summary.py and bench/plot read one shape:
//
//	scenario, label, time, run_id, server, transport   what ran
//	subs, rounds, publishers, channels, rate, ...       the load
//	delivered, expected, lost, duplicated, out_of_order deliveries
//	lat_p50_ms, lat_p99_ms, lat_max_ms                  publish -> receipt
//	deliveries_per_s, publishes_per_s                   throughput
//	server_cpu_us_per_delivery, server_cpu_us_per_publish
//	rss_bytes_per_sub, pss_bytes_per_sub                idle memory
//	error                                               why a run failed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
	"syscall"
)

type result struct {
	keys []string
	vals map[string]any
}

func newResult() *result { return &result{vals: map[string]any{}} }

func (r *result) set(k string, v any) {
	if _, ok := r.vals[k]; !ok {
		r.keys = append(r.keys, k)
	}
	if f, ok := v.(float64); ok {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			v = nil
		} else {
			v = math.Round(f*1000) / 1000
		}
	}
	r.vals[k] = v
}

func (r *result) get(k string) any { return r.vals[k] }

func (r *result) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range r.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(r.vals[k])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// emit prints the JSON line and appends it to jsonOut.
func (r *result) emit(jsonOut string) {
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	if jsonOut != "" {
		f, err := os.OpenFile(jsonOut, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			f.Write(append(line, '\n'))
			f.Close()
		} else {
			fmt.Fprintln(os.Stderr, "json-out:", err)
		}
	}
}

// pctMs returns the p50, p99 and max of nanosecond samples, in ms.
func pctMs(ns []int64) (p50, p99, max float64) {
	if len(ns) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	s := append([]int64(nil), ns...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return float64(s[i]) / 1e6
	}
	return at(0.50), at(0.99), float64(s[len(s)-1]) / 1e6
}

// setLatency records p50/p99/max of nanosecond samples as lat_*_ms.
func (r *result) setLatency(ns []int64) {
	p50, p99, mx := pctMs(ns)
	r.set("lat_p50_ms", p50)
	r.set("lat_p99_ms", p99)
	r.set("lat_max_ms", mx)
}

func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return math.NaN()
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// minCPU is the least server CPU time (10 ticks of /proc's 10 ms clock)
// from which a CPU time per operation is reported.
const minCPU = 0.1

// addServer records the server's CPU and memory between two samples; per
// is the operation count for "server_cpu_us_per_<perName>" (delivery,
// publish).
func (r *result) addServer(a, b procSample, per int64, perName string) {
	cl := b.selfCPU - a.selfCPU
	r.set("client_cpu_s_window", cl)
	if per > 0 {
		r.set("client_cpu_us_per_"+perName, cl*1e6/float64(per))
	}
	r.set("host_busy_cpu_s_window", b.hostBusy-a.hostBusy)
	if !a.ok || !b.ok {
		r.set("server_cpu_us_per_"+perName, nil)
		return
	}
	cpu := b.cpuSec - a.cpuSec
	// CPU used on the box by neither the server nor this tool (other
	// tenants, kernel threads)
	r.set("other_cpu_s_window", (b.hostBusy-a.hostBusy)-cpu-cl)
	r.set("server_pids", len(b.pids))
	r.set("server_cpu_s", cpu)
	switch {
	case cpu < minCPU:
		// a few clock ticks: the figure per operation would be noise
		r.set("server_cpu_us_per_"+perName, nil)
		r.set("server_cpu_too_short", true)
	case per > 0:
		r.set("server_cpu_us_per_"+perName, cpu*1e6/float64(per))
	default:
		r.set("server_cpu_us_per_"+perName, nil)
	}
	r.set("server_rss_kb_end", b.rssKB)
	r.set("server_pss_kb_end", b.pssKB)
}
