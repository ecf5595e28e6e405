#!/usr/bin/env python3
"""caddy/nchan ratios from pushbench JSON lines of one run: ratios.py FILE..."""
import json, sys

rows = [json.loads(l) for p in sys.argv[1:] for l in open(p) if l.startswith("{")]

def key(r):
    s = r["scenario"]
    if s == "fanout": return (s, "S=%d" % r["subs"])
    if s == "publish": return (s, "P=%d C=%d" % (r["publishers"], r["channels"]))
    if s == "idle": return (s, "N=%d%s" % (r["subs"], " shared" if r.get("shared_channel") else ""))
    if s == "stream": return (s, "S=%d" % r["subs"])
    return (s, "")

metrics = {
    "fanout": [("deliveries_per_s", "deliveries/s", True), ("server_cpu_s_per_1000_deliveries", "server CPU per delivery", False),
               ("lat_p50_ms", "latency p50", False), ("lat_p99_ms", "latency p99", False), ("lost", "lost", None)],
    "publish": [("publishes_per_s", "publishes/s", True), ("server_cpu_s_per_1000_publishes", "server CPU per publish", False),
                ("lat_p99_ms", "latency p99", False)],
    "idle": [("rss_bytes_per_sub", "RSS bytes per idle subscriber", False)],
    "stream": [("deliveries_per_s", "deliveries/s", True), ("lost", "lost", None)],
}
def tables(side):

    # caddy-push against Caddy's respond handler (same route shape, same run)
    resp = {k: v["respond"] for k, v in side.items() if "respond" in v}
    if resp:
        print("| scenario | metric | caddy-push | respond | caddy-push/respond |")
        print("|---|---|---|---|---|")
        for k in sorted(resp):
            c, r = side[k].get("caddy"), resp[k]
            if not c: continue
            for m, name in [("publishes_per_s", "publishes/s"), ("server_cpu_s_per_1000_publishes", "server CPU per request")]:
                if c.get(m) and r.get(m):
                    print("| %s %s | %s | %g | %g | %.2fx |" % (k[0], k[1], name, c[m], r[m], c[m] / r[m]))
        base = resp.get(("publish", "P=16 C=1"), {}).get("server_cpu_s_per_1000_publishes")
        for k in sorted(side):
            c = side[k].get("caddy")
            if k[0] == "fanout" and c and base and c.get("server_cpu_s_per_1000_deliveries"):
                v = c["server_cpu_s_per_1000_deliveries"]
                print("| fanout %s | CPU per delivery vs respond's per request | %g | %g | %.2fx |" % (k[1], v, base, v / base))
        print()

    if not any("caddy" in v and "nchan" in v for v in side.values()):
        return
    print("| scenario | metric | caddy | nchan | caddy/nchan |")
    print("|---|---|---|---|---|")
    for k in sorted(side):
        c, n = side[k].get("caddy"), side[k].get("nchan")
        if not c or not n: continue
        for m, name, higher_better in metrics.get(k[0], []):
            cv, nv = c.get(m), n.get(m)
            if cv is None or nv is None: continue
            ratio = "-" if higher_better is None or not nv else "%.2fx" % (cv / nv)
            print("| %s %s | %s | %s | %s | %s |" % (k[0], k[1], name, "%g" % cv, "%g" % nv, ratio))

# labels are WHO-REP (caddy-r1, nchan-r2, respond-r1): one table per REP
reps = {}
for r in rows:
    who, _, rep = r["label"].partition("-")
    reps.setdefault(rep, {}).setdefault(key(r), {})[who] = r

for rep in sorted(reps):
    side = reps[rep]
    if len(reps) > 1:
        print("### %s\n" % rep)
    tables(side)
