package caddypush

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

const adminBase = "http://localhost:2999"

func adminJSON(t *testing.T, method, path string, into any) resp {
	t.Helper()
	r := do(t, h1Client, method, adminBase+path, nil)
	if into != nil && r.status == 200 {
		if err := json.Unmarshal([]byte(r.body), into); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, r.body)
		}
	}
	return r
}

func TestAdminChannelAPI(t *testing.T) { forEachStore(t, testAdminChannelAPI) }

func testAdminChannelAPI(t *testing.T) {
	startMain(t)
	id := chanName(t, "a/b c?&") // reserved characters in the id
	publish(t, "/pub/big", url.QueryEscape(id), "first")
	path := "/push/channels/" + url.PathEscape(id)

	var ch adminChannel
	if r := adminJSON(t, "GET", path, &ch); r.status != 200 || ch.ID != id || ch.Group != "" || ch.Messages != 1 || ch.Bytes <= 0 || ch.LastRequested != -1 ||
		strings.Contains(r.body, `"key"`) { // undocumented, and always "" (it was there)
		t.Fatalf("GET %s: %d %q -> %+v", path, r.status, r.body, ch)
	}
	// A waiter receives an admin publish; the channel keeps the buffer
	// length of its publisher location (1000), not the default 10.
	cur := do(t, h1Client, "GET", base+"/sub?id="+url.QueryEscape(id), nil).cursor()
	got := make(chan resp, 1)
	getAsync(h1Client, base+"/sub?id="+url.QueryEscape(id), got, cur.headers()...)
	waitFor(t, "waiter", func() bool { return waiters(t, "/"+id) == 1 })
	r := do(t, h1Client, "POST", adminBase+path, strings.NewReader("from admin"), "Accept", "application/json")
	if r.status != 201 || roundRequested(r.body) != `{"messages": 2, "requested": 0, "subscribers": 1}` {
		t.Fatalf("admin POST: %d %q", r.status, r.body)
	}
	if w := <-got; w.status != 200 || w.body != "from admin" {
		t.Fatalf("waiter got %d %q", w.status, w.body)
	}
	for i := range 15 {
		do(t, h1Client, "POST", adminBase+path, strings.NewReader(fmt.Sprint(i)))
	}
	if adminJSON(t, "GET", path, &ch); ch.Messages != 17 {
		t.Fatalf("after 17 admin publishes on a 1000-message channel: %d stored", ch.Messages)
	}
	// DELETE: 410 to waiters, then 404.
	getAsync(h1Client, base+"/sub?id="+url.QueryEscape(id)+"&x=1", got, "If-None-Match", "999", "If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")
	waitFor(t, "waiter", func() bool { return waiters(t, "/"+id) == 1 })
	if r := do(t, h1Client, "DELETE", adminBase+path, nil); r.status != 200 || !strings.Contains(r.body, "active subscribers: 1") {
		t.Fatalf("admin DELETE: %d %q", r.status, r.body)
	}
	if w := <-got; w.status != 410 {
		t.Fatalf("waiter got %d on admin DELETE", w.status)
	}
	if r := adminJSON(t, "GET", path, nil); r.status != 404 {
		t.Fatalf("GET after DELETE: %d", r.status)
	}
	if r := adminJSON(t, "DELETE", path, nil); r.status != 404 {
		t.Fatalf("second DELETE: %d", r.status)
	}
	if r := adminJSON(t, "PUT", path, nil); r.status != 405 {
		t.Fatalf("PUT: %d", r.status)
	}
	if r := adminJSON(t, "GET", "/push/channels/", nil); r.status != 400 {
		t.Fatalf("empty id: %d", r.status)
	}
	// Groups are addressed with ?group=.
	publish(t, "/pub/grp", "g-"+t.Name(), "in group")
	if r := adminJSON(t, "GET", "/push/channels/g-"+t.Name()+"?group=g1", &ch); r.status != 200 || ch.Group != "g1" {
		t.Fatalf("grouped channel: %d %+v", r.status, ch)
	}
	// A group with a '/' is none a location can have (channel_group refuses
	// it): it was another spelling of group g1's id "x/...".
	for _, path := range []string{"/push/channels/" + t.Name() + "?group=g1/x", "/push/channels?group=g1/x"} {
		if r := adminJSON(t, "GET", path, nil); r.status != 400 || !strings.Contains(r.body, "group") {
			t.Errorf("GET %s: %d %q, want 400", path, r.status, r.body)
		}
	}
}

func TestAdminListingAndStats(t *testing.T) { forEachStore(t, testAdminListingAndStats) }

func testAdminListingAndStats(t *testing.T) {
	startMain(t)
	var before adminStats
	adminJSON(t, "GET", "/push/stats", &before)
	prefix := chanName(t, "")
	for i := range 5 {
		publish(t, "/pub", fmt.Sprintf("%s%d", prefix, i), "x")
	}
	if ids := listAll(t, prefix, 2); fmt.Sprint(ids) != fmt.Sprintf("[%[1]s0 %[1]s1 %[1]s2 %[1]s3 %[1]s4]", prefix) {
		t.Fatalf("paged listing: %v", ids)
	}
	// Channels past their channel_timeout that the store still holds (on
	// Redis, until their keys expire, a few seconds later): a page may
	// come out empty, and the listing still goes on past it (it panicked).
	gone := chanName(t, "gone")
	for i := range 3 {
		publish(t, "/pub/short", fmt.Sprintf("%s%d", gone, i), "x")
	}
	defer testSkew.Store(0)
	testSkew.Add(int64(20 * time.Second)) // the message expired at 10 s, the channel 5 s later
	if ids := listAll(t, gone, 1); len(ids) > 3 {
		t.Fatalf("listing past expired channels: %v", ids)
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x"} {
		if r := adminJSON(t, "GET", "/push/channels?"+bad, nil); r.status != 400 {
			t.Fatalf("%s: %d", bad, r.status)
		}
	}
	var st adminStats
	// Eight publications: the counters say so exactly (the channels are a
	// gauge that other tests' channels leaving may lower).
	if r := adminJSON(t, "GET", "/push/stats", &st); r.status != 200 || st.Channels < 5 || st.Published != before.Published+8 ||
		st.MaxBytes != 64<<20 || st.Bytes <= 0 || st.Publishes["202"] != before.Publishes["202"]+8 {
		t.Fatalf("stats: %q, before %+v", r.body, before)
	}
}

// listAll lists the channels whose id starts with prefix, limit at a
// time, following next (at most 10 pages), and returns their ids.
func listAll(t *testing.T, prefix string, limit int) []string {
	t.Helper()
	var ids []string
	after := ""
	for range 10 {
		var out struct {
			Channels []adminChannel `json:"channels"`
			Next     string         `json:"next"`
		}
		q := fmt.Sprintf("/push/channels?limit=%d&prefix=%s&after=%s", limit, url.QueryEscape(prefix), url.QueryEscape(after))
		if r := adminJSON(t, "GET", q, &out); r.status != 200 {
			t.Fatalf("GET %s: %d %q", q, r.status, r.body)
		}
		for _, c := range out.Channels {
			ids = append(ids, c.ID)
		}
		if out.Next == "" {
			return ids
		}
		after = out.Next
	}
	t.Fatalf("the listing of %s* went on past 10 pages: %v", prefix, ids)
	return nil
}

// metricValue returns the value of one sample line of /metrics, or -1.
func metricValue(t *testing.T, sample string) float64 {
	t.Helper()
	return metricIn(do(t, h1Client, "GET", adminBase+"/metrics", nil).body, sample)
}

// metricIn returns a sample's value in a /metrics body, or -1 without it.
func metricIn(body, sample string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			var f float64
			fmt.Sscanf(v, "%g", &f)
			return f
		}
	}
	return -1
}

func TestMetricsSurviveReloadAndCanBeDisabled(t *testing.T) {
	tester := startMain(t)
	publish(t, "/pub", chanName(t, "m"), "x")
	before := metricValue(t, `caddy_push_publishes_total{status="202"}`)
	if before < 1 || metricValue(t, "caddy_push_channels") < 1 || metricValue(t, "caddy_push_store_limit_bytes") != 64<<20 {
		t.Fatalf("metrics missing: publishes %v", before)
	}
	load(tester, mainConfig) // reload
	publish(t, "/pub", chanName(t, "m"), "y")
	if after := metricValue(t, `caddy_push_publishes_total{status="202"}`); after != before+1 {
		t.Fatalf("publishes after reload: %v, want %v", after, before+1)
	}
	load(tester, strings.Replace(mainConfig, "max_reserved_memory 64M", "max_reserved_memory 64M\n\t\tdisable_metrics", 1))
	if v := metricValue(t, "caddy_push_channels"); v != -1 {
		t.Fatalf("disable_metrics: caddy_push_channels still reported (%v)", v)
	}
	load(tester, mainConfig)
}

func TestPlaceholders(t *testing.T) { forEachStore(t, testPlaceholders) }

func testPlaceholders(t *testing.T) {
	startMain(t)
	ch := chanName(t, "p")
	r := do(t, h1Client, "POST", base+"/pub/ph?id="+ch, strings.NewReader("x"))
	if r.header.Get("X-Push-Channel") != ch || !strings.HasSuffix(r.header.Get("X-Push-Message"), ":0") ||
		r.header.Get("X-Push-Subscribers") != "0" {
		t.Fatalf("publisher placeholders: %v", r.header)
	}
	s := do(t, h1Client, "GET", base+"/sub/ph?id="+ch, nil)
	if s.header.Get("X-Push-Message") != r.header.Get("X-Push-Message") {
		t.Fatalf("subscriber message id %q, publisher said %q", s.header.Get("X-Push-Message"), r.header.Get("X-Push-Message"))
	}
}
