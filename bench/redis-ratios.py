#!/usr/bin/env python3
"""Ratios of bench/redis.sh: redis-store/memory-store and redis-store/nchan,
from cmd/pushbench JSON lines of one run: redis-ratios.py FILE"""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
metrics = {
    "fanout": [("deliveries_per_s", "deliveries/s"), ("server_cpu_us_per_delivery", "server CPU µs per delivery"),
               ("latency_p50_ms", "latency p50 ms"), ("latency_p99_ms", "latency p99 ms"), ("lost", "lost"),
               ("duplicated", "duplicated")],
    "publish": [("publishes_per_s", "publishes/s"), ("server_cpu_us_per_publish", "server CPU µs per publish"),
                ("latency_p99_ms", "latency p99 ms")],
    "stream": [("deliveries_per_s", "deliveries/s"), ("server_cpu_us_per_delivery", "server CPU µs per delivery"),
               ("lost", "lost"), ("duplicated", "duplicated")],
}
side = {}
for r in rows:
    s = r["scenario"]
    k = (s, "P=%d C=%d" % (r["publishers"], r["channels"]) if s == "publish" else "S=%d" % r["subs"])
    side.setdefault(k, {})[r["label"]] = r

print("| scenario | metric | memory | redis (2 Caddys) | nchan | redis/memory | redis/nchan |")
print("|---|---|---|---|---|---|---|")
for k in sorted(side):
    v = side[k]
    for m, name in metrics[k[0]]:
        vals = [v.get(w, {}).get(m) for w in ("memory", "redis", "nchan")]
        if all(x is None for x in vals):
            continue
        def ratio(a, b):
            return "%.2fx" % (a / b) if a is not None and b else "-"
        print("| %s %s | %s | %s | %s | %s | %s | %s |" % (k[0], k[1], name,
              *["-" if x is None else "%g" % x for x in vals], ratio(vals[1], vals[0]), ratio(vals[1], vals[2])))
