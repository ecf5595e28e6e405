package caddypush

import (
	"errors"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddypush/caddy-push/pushstore"
)

var errNoInspection = errors.New("the store cannot be inspected")

// counters are the process's lifetime counts of HTTP outcomes. They are
// package-level so they survive config reloads; the admin API and the
// Prometheus collector read them.
var counters struct {
	publishes [600]atomic.Uint64 // POST outcomes by status
	refusals  [600]atomic.Uint64 // headers-only and text answers by status
}

func countPublish(status int) {
	if status > 0 && status < len(counters.publishes) {
		counters.publishes[status].Add(1)
	}
}

func countRefusal(status int) {
	if status > 0 && status < len(counters.refusals) {
		counters.refusals[status].Add(1)
	}
}

// byStatus returns the non-zero counts of a status array.
func byStatus(a *[600]atomic.Uint64) map[string]uint64 {
	m := map[string]uint64{}
	for code := range a {
		if n := a[code].Load(); n > 0 {
			m[strconv.Itoa(code)] = n
		}
	}
	return m
}

// collector exposes the store and the counters to Prometheus, namespace
// caddy_push_. Each config registers a new one in its fresh registry; the
// values come from the pooled store and the package-level counters, so
// they carry over reloads.
type collector struct{ store pushstore.Store }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("caddy", "push", name), help, labels, nil)
}

var (
	descChannels  = desc("channels", "Channels in the store.")
	descMessages  = desc("messages_stored", "Stored, unexpired messages.")
	descWaiters   = desc("waiters", "Long-poll subscribers waiting for a message.")
	descBytes     = desc("store_bytes", "Bytes charged against max_reserved_memory.")
	descLimit     = desc("store_limit_bytes", "The store's byte budget, max_reserved_memory.")
	descPublishes = desc("publishes_total", "Publications (POST) answered, by status.", "status")
	descDelivered = desc("deliveries_total", "Messages sent to subscribers.")
	descRefusals  = desc("refusals_total", "Requests refused or ended without a message, by status (400, 403, 404, 405, 406, 408, 409, 410, 413, 503, 507).", "code")
	descExpired   = desc("expired_messages_total", "Stored messages removed by message_timeout.")
	descUp        = desc("store_up", "1 when the store answered this scrape, 0 when its backend (Redis) is unreachable.")
	descReceiving = desc("receiving_bodies", "Publication bodies being received.")
	descBodyBytes = desc("body_bytes", "Bytes held by the publication bodies being received, against max_body_memory.")
	descOpen      = desc("subscribers", "Subscribers this process serves now, by transport (waiting long-polls and open streams).", "transport")
	descPubWS     = desc("publishing_websockets", "WebSockets open on publisher locations, publishing the frames they receive.")
)

// Describe sends the descriptors of every metric.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descChannels, descMessages, descWaiters, descBytes, descLimit,
		descPublishes, descDelivered, descRefusals, descExpired, descUp, descReceiving, descBodyBytes, descOpen, descPubWS} {
		ch <- d
	}
}

// Collect sends the current values. The counters come from the store's
// Counters, which never fail: they must not drop to 0 (a reset to
// Prometheus) while the size, which may have to ask a backend, cannot be
// read.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	var st pushstore.Stats
	err := errNoInspection
	if insp, ok := c.store.(pushstore.Inspector); ok {
		st, err = insp.Stats()
	}
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if err == nil { // else the store's backend is down: no size gauges this scrape
		gauge(descChannels, float64(st.Channels))
		gauge(descMessages, float64(st.Messages))
		gauge(descWaiters, float64(st.Waiters))
		gauge(descBytes, float64(st.Bytes))
		gauge(descLimit, float64(st.MaxBytes))
		gauge(descUp, 1)
	} else {
		gauge(descUp, 0)
	}
	for t := range numTransports {
		ch <- prometheus.MustNewConstMetric(descOpen, prometheus.GaugeValue, float64(streams[t].Load()), t.String())
	}
	gauge(descPubWS, float64(publishingSockets.len()))
	gauge(descReceiving, float64(bodies.receiving.Load()))
	gauge(descBodyBytes, float64(bodies.used.Load()))
	n := c.store.Counters()
	counter(descDelivered, n.Delivered)
	counter(descExpired, n.Expired)
	for code, n := range byStatus(&counters.publishes) {
		counter(descPublishes, n, code)
	}
	for code, n := range byStatus(&counters.refusals) {
		counter(descRefusals, n, code)
	}
}

// Interface guards
var _ prometheus.Collector = collector{}
