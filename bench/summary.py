#!/usr/bin/env python3
"""Tables and ratios from cmd/pushbench's JSON lines (one shape for every
bench script; standard library only).

    summary.py [--ratio A/B]... FILE.jsonl...

Each line's label is WHO-REP (caddy-r1, nchan-r2, centrifugo-r1): WHO is the
server or setup, REP the repetition. Lines are grouped by scenario and load
(and transport); for each group one Markdown table has a row per metric, a
column per server with the value of every repetition ("a; b; c"), and a
column per --ratio A/B with A's value over B's, repetition by repetition, so
every ratio compares two servers measured in the same run. Without --ratio,
every server is compared with the first one seen. When a `respond` setup
measured the publish load (16 publishers, 1 channel), each server's CPU per
delivery is also given against respond's CPU per request.
"""
import argparse
import json
import sys

METRICS = {  # scenario -> (key, name); ratios are taken of every metric but the counts
    "fanout": [("deliveries_per_s", "deliveries/s"), ("server_cpu_us_per_delivery", "server CPU µs per delivery"),
               ("lat_p50_ms", "latency p50 ms"), ("lat_p99_ms", "latency p99 ms"),
               ("lost", "lost"), ("duplicated", "duplicated"), ("out_of_order", "out of order"),
               ("other_cpu_s_window", "CPU s of other processes (noise)")],
    "publish": [("publishes_per_s", "publishes/s"), ("server_cpu_us_per_publish", "server CPU µs per publish"),
                ("lat_p99_ms", "latency p99 ms")],
    "idle": [("rss_bytes_per_sub", "RSS bytes per idle subscriber"), ("pss_bytes_per_sub", "PSS bytes per idle subscriber")],
    "slow": [("server_rss_kb_growth", "server RSS growth KiB"),
             ("slow_cut", "the server closed the slow subscriber's connection within 10 s"),
             ("lost", "lost (readers)"), ("duplicated", "duplicated"), ("out_of_order", "out of order")],
    "stream": [("deliveries_per_s", "deliveries/s"), ("server_cpu_us_per_delivery", "server CPU µs per delivery"),
               ("lost", "lost"), ("duplicated", "duplicated")],
    "catchup": [("messages_per_request", "messages per request"), ("catchup_ms", "ms for a subscriber to catch up"),
                ("deliveries_per_s", "messages/s"), ("server_cpu_us_per_delivery", "server CPU µs per message")],
}
METRICS["rate"] = METRICS["fanout"]
COUNTS = {"lost", "duplicated", "out_of_order", "other_cpu_s_window", "slow_cut"}  # no ratio


def n(count, word):
    return f"{count} {word}" + ("" if count == 1 else "s")


def group_key(r):
    """The scenario and load a line measured, as a heading."""
    s, tr = r["scenario"], r.get("transport", "longpoll")
    pub = ", publishing over websocket" if r.get("publisher") == "websocket" else ""
    if s == "fanout":
        return f"fanout {tr}, {n(r['subs'], 'subscriber')} × {n(r['rounds'], 'round')}{pub}"
    if s == "rate":
        return f"rate {tr}, {n(r['subs'], 'subscriber')}, {r['rate']:g} deliveries/s offered{pub}"
    if s == "idle":
        return f"idle {tr}, {n(r['subs'], 'subscriber')}" + (" on one channel" if r.get("shared_channel") else "")
    if s == "publish":
        over = "" if tr == "longpoll" else f" over {tr}"
        return f"publish{over}, {n(r['publishers'], 'publisher')}, {n(r['channels'], 'channel')}"
    if s == "slow":
        return (f"slow {tr}: one subscriber never reads, {n(r['subs'], 'reader')}, "
                f"{r['total_bytes'] / 2**20:.0f} MiB in {r['msg_size'] // 1024} KiB messages")
    if s == "stream":
        return f"stream, {n(r['subs'], 'subscriber')}"
    if s == "catchup":
        return f"catchup, {n(r['channels'], 'channel')} × {n(r['rounds'], 'stored message')}"
    return None  # proto, probe: checks, not figures


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.1f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"
    if isinstance(v, int) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ratio", action="append", default=[], help="A/B: A's figures over B's (repeatable)")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    rows = []
    for p in a.files:
        with open(p) as f:
            rows += [json.loads(l) for l in f if l.startswith("{")]
    groups, whos, reps = {}, [], []
    for r in rows:
        k = group_key(r)
        if k is None:
            continue
        who, _, rep = r["label"].rpartition("-")
        if not who:
            who, rep = r["label"] or "?", "r1"
        if who not in whos:
            whos.append(who)
        if rep not in reps:
            reps.append(rep)
        groups.setdefault((r["scenario"], k), {}).setdefault(who, {})[rep] = r
    ratios = [tuple(x.split("/", 1)) for x in a.ratio] or [(w, whos[0]) for w in whos[1:]]

    def val(r, m):
        if r is None:
            return None
        return r.get(m)

    for (scen, k), by in groups.items():
        present = [w for w in whos if w in by]
        rs = [(x, y) for x, y in ratios if x in by and y in by]
        print(f"\n### {k}\n")
        print("| metric | " + " | ".join(present) + "".join(f" | {x}/{y}" for x, y in rs) + " |")
        print("|---" * (1 + len(present) + len(rs)) + "|")
        errs = {w: [rep for rep, r in by[w].items() if r.get("error")] for w in present}
        for m, name in METRICS.get(scen, []):
            if all(val(by[w].get(rep), m) is None for w in present for rep in reps):
                continue
            cells = ["; ".join(fmt(val(by[w].get(rep), m)) for rep in reps if rep in by[w]) for w in present]
            for x, y in rs:
                out = []
                for rep in reps:
                    xv, yv = val(by[x].get(rep), m), val(by[y].get(rep), m)
                    if rep not in by[x] or rep not in by[y]:
                        continue
                    out.append("-" if m in COUNTS or not xv or not yv else f"{xv / yv:.2f}x")
                cells.append("; ".join(out))
            print(f"| {name} | " + " | ".join(cells) + " |")
        for w, bad in errs.items():
            for rep in bad:
                print(f"\n{w}-{rep} failed: {by[w][rep]['error']}")

    # CPU per delivery against respond's CPU per request (publish, 16 publishers, 1 channel)
    resp = groups.get(("publish", group_key({"scenario": "publish", "publishers": 16, "channels": 1})), {}).get("respond")
    if resp:
        print("\n### CPU per delivery against respond's CPU per request (publish, 16 publishers, 1 channel)\n")
        print("| scenario | server | CPU µs per delivery / respond's per request |")
        print("|---|---|---|")
        for (scen, k), by in groups.items():
            if scen not in ("fanout", "stream", "rate"):
                continue
            for w in whos:
                if w not in by:
                    continue
                out = []
                for rep in reps:
                    v = val(by[w].get(rep), "server_cpu_us_per_delivery")
                    b = val(resp.get(rep), "server_cpu_us_per_publish")
                    if v and b:
                        out.append(f"{v / b:.2f}x")
                if out:
                    print(f"| {k} | {w} | {'; '.join(out)} |")


if __name__ == "__main__":
    sys.exit(main())
