// Command plot turns cmd/pushbench's JSON lines into SVG charts, with
// gonum.org/v1/plot (a module of its own, so the plotting library stays
// out of the project's go.mod):
//
//	cpu-per-delivery.svg     server CPU µs per delivery against subscribers,
//	                         rate-driven fan-out, one line per server and transport
//	p99-latency.svg          latency p99 against subscribers, the same lines
//	idle-memory.svg          memory per idle subscriber (KB), one bar per
//	                         server and transport, at the largest count measured
//	one-subscriber-p50.svg   publish to one subscriber: latency p50, bars
//
// Each point is the median over the repetitions in the files. Labels are
// WHO-REP as the bench scripts write them (nchan-r1, caddy-r2).
//
//	go run . -out DIR FILE.jsonl...     (bench/plot.sh does this)
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// row is the part of a result line the charts use.
type row struct {
	Scenario  string   `json:"scenario"`
	Label     string   `json:"label"`
	Transport string   `json:"transport"`
	Publisher string   `json:"publisher"` // "websocket": frames on a publisher's socket; "": POST
	Subs      int      `json:"subs"`
	Rate      float64  `json:"rate"`
	Shared    bool     `json:"shared_channel"`
	CPU       *float64 `json:"server_cpu_us_per_delivery"`
	P50       *float64 `json:"lat_p50_ms"`
	P99       *float64 `json:"lat_p99_ms"`
	RSS       *float64 `json:"rss_bytes_per_sub"`
	Error     string   `json:"error"`
}

// series names a line or bar: the server (label without -REP), the
// transport, and a publisher that is not POST.
func (r row) series() string {
	who := r.Label
	if i := strings.LastIndex(who, "-"); i > 0 {
		who = who[:i]
	}
	if r.Publisher != "" {
		return who + " " + r.Transport + ", " + r.Publisher + " publisher"
	}
	return who + " " + r.Transport
}

func main() {
	out := flag.String("out", "charts", "folder for the SVG files")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: plot -out DIR FILE.jsonl...")
		os.Exit(2)
	}
	rows, err := read(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	charts := []struct {
		file string
		make func([]row) (*plot.Plot, error)
	}{
		{"cpu-per-delivery.svg", func(rs []row) (*plot.Plot, error) {
			return lines(rs, "Fan-out: server CPU per delivery", "µs per delivery", func(r row) *float64 { return r.CPU })
		}},
		{"p99-latency.svg", func(rs []row) (*plot.Plot, error) {
			return lines(rs, "Fan-out: latency p99, publish to receipt", "ms", func(r row) *float64 { return r.P99 })
		}},
		{"idle-memory.svg", idleBars},
		{"one-subscriber-p50.svg", oneSubBars},
	}
	for _, c := range charts {
		p, err := c.make(rows)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", c.file, err)
			continue
		}
		if p == nil {
			continue // no data for this chart
		}
		path := filepath.Join(*out, c.file)
		if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, path); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("wrote", path)
	}
}

// read loads every JSON line of the files; failed runs are left out.
func read(files []string) ([]row, error) {
	var rows []row
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r row
			if !strings.HasPrefix(sc.Text(), "{") || json.Unmarshal(sc.Bytes(), &r) != nil || r.Error != "" {
				continue
			}
			rows = append(rows, r)
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// colors gives each series the same color in every chart.
var palette = []color.Color{
	color.RGBA{0x1f, 0x77, 0xb4, 255}, color.RGBA{0xff, 0x7f, 0x0e, 255}, color.RGBA{0x2c, 0xa0, 0x2c, 255},
	color.RGBA{0xd6, 0x27, 0x28, 255}, color.RGBA{0x94, 0x67, 0xbd, 255}, color.RGBA{0x8c, 0x56, 0x4b, 255},
}

func colorOf(names []string, name string) color.Color {
	return palette[slices.Index(names, name)%len(palette)]
}

// seriesNames lists the series of all rows in a stable order.
func seriesNames(rows []row) []string {
	var names []string
	for _, r := range rows {
		if !slices.Contains(names, r.series()) {
			names = append(names, r.series())
		}
	}
	sort.Strings(names)
	return names
}

// lines plots metric against subscribers for the rate scenario (log x).
func lines(rows []row, title, ylabel string, metric func(row) *float64) (*plot.Plot, error) {
	names := seriesNames(rows)
	pts := map[string]map[int][]float64{}
	for _, r := range rows {
		if r.Scenario != "rate" || metric(r) == nil {
			continue
		}
		s := r.series()
		if pts[s] == nil {
			pts[s] = map[int][]float64{}
		}
		pts[s][r.Subs] = append(pts[s][r.Subs], *metric(r))
	}
	if len(pts) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "subscribers on one channel (same deliveries/s offered)"
	p.Y.Label.Text = ylabel
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	top := 0.0
	for _, s := range names {
		bySubs := pts[s]
		if len(bySubs) == 0 {
			continue
		}
		var subs []int
		for n := range bySubs {
			subs = append(subs, n)
		}
		sort.Ints(subs)
		xys := make(plotter.XYs, len(subs))
		for i, n := range subs {
			xys[i] = plotter.XY{X: float64(n), Y: median(bySubs[n])}
			top = max(top, xys[i].Y)
		}
		l, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, err
		}
		l.Color, sc.Color = colorOf(names, s), colorOf(names, s)
		if strings.HasSuffix(s, "websocket") {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			sc.Shape = draw.BoxGlyph{}
		}
		p.Add(l, sc)
		p.Legend.Add(s, l, sc)
	}
	p.Y.Max = top * 1.5 // room for the legend above the lines
	return p, nil
}

// bars plots one bar per series of the metric's median over sel's rows.
func bars(rows []row, sel func(row) bool, metric func(row) *float64, title, ylabel string) (*plot.Plot, error) {
	names := seriesNames(rows)
	vals := map[string][]float64{}
	for _, r := range rows {
		if sel(r) && metric(r) != nil {
			vals[r.series()] = append(vals[r.series()], *metric(r))
		}
	}
	if len(vals) == 0 {
		return nil, nil
	}
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	var labels []string
	top := 0.0
	for _, s := range names {
		v, ok := vals[s]
		if !ok {
			continue
		}
		top = max(top, median(v))
		b, err := plotter.NewBarChart(plotter.Values{median(v)}, vg.Points(28))
		if err != nil {
			return nil, err
		}
		b.Color = colorOf(names, s)
		b.LineStyle.Width = 0
		b.XMin = float64(len(labels))
		labels = append(labels, s)
		p.Add(b)
	}
	p.NominalX(labels...)
	p.Y.Max = top * 1.1
	return p, nil
}

// idleBars: memory per idle subscriber at the largest count measured.
func idleBars(rows []row) (*plot.Plot, error) {
	most := 0
	for _, r := range rows {
		if r.Scenario == "idle" && !r.Shared && r.RSS != nil {
			most = max(most, r.Subs)
		}
	}
	kb := func(r row) *float64 {
		if r.RSS == nil {
			return nil
		}
		v := math.Round(*r.RSS/1024*10) / 10
		return &v
	}
	return bars(rows, func(r row) bool { return r.Scenario == "idle" && !r.Shared && r.Subs == most }, kb,
		fmt.Sprintf("Idle: memory per open subscriber, %d subscribers", most), "KB (RSS growth / subscribers)")
}

// oneSubBars: publish to one subscriber, latency p50.
func oneSubBars(rows []row) (*plot.Plot, error) {
	return bars(rows, func(r row) bool { return r.Scenario == "fanout" && r.Subs == 1 },
		func(r row) *float64 { return r.P50 }, "Publish to one subscriber: latency p50", "ms")
}
