#!/usr/bin/env python3
"""caddy-push against bench_floor (and both against respond), per repetition,
and against nchan, from bench/floor.sh's JSON lines: floor-ratios.py FILE..."""
import json, sys

rows = [json.loads(l) for p in sys.argv[1:] for l in open(p) if l.startswith("{")]
runs = {}
for r in rows:
    who, rep = r["label"].rsplit("-", 1)
    sc = r["scenario"] + (" %d" % r["subs"] if r["scenario"] == "fanout" else "")
    runs.setdefault(rep, {})[(who, sc)] = r

print("| rep | scenario | metric | caddy-push | floor | nchan | push/floor | floor/respond | push/respond | floor/nchan | push/nchan |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for rep in sorted(runs):
    g = runs[rep]
    resp = g.get(("respond", "publish"), {}).get("server_cpu_s_per_1000_publishes")
    for sc in ("fanout 1000", "fanout 5000", "stream"):
        c, f, n = g.get(("caddy", sc)), g.get(("floor", sc)), g.get(("nchan", sc), {})
        if not c or not f:
            continue
        for m, name in (("server_cpu_s_per_1000_deliveries", "CPU per delivery (ms)"),
                        ("deliveries_per_s", "deliveries/s"), ("lat_p99_ms", "p99 (ms)"), ("lost", "lost"), ("duplicated", "duplicated")):
            cv, fv = c.get(m), f.get(m)
            if cv is None or fv is None:
                continue
            nv = n.get(m)
            ratio = "%.2fx" % (cv / fv) if fv and m not in ("lost", "duplicated") else "-"
            fr = pr = fn = pn = ""
            if m.startswith("server_cpu") and resp:
                fr, pr = "%.2fx" % (fv / resp), "%.2fx" % (cv / resp)
            if nv and m not in ("lost", "duplicated"):
                fn, pn = "%.2fx" % (fv / nv), "%.2fx" % (cv / nv)
            print("| %s | %s | %s | %g | %g | %s | %s | %s | %s | %s | %s |" % (
                rep, sc, name, cv, fv, "-" if nv is None else "%g" % nv, ratio, fr, pr, fn, pn))
    if resp:
        print("| %s | publish (respond) | CPU per request (ms) | | | | | %g | | | |" % (rep, resp))
