#!/usr/bin/env bash
# Idle long-poll memory: caddy-push against Caddy's floor (a handler that only
# blocks until the client leaves, bench/blockcaddy), same tool, same run,
# GOMAXPROCS=1, each server fresh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-bench
(cd "$ROOT" && go build -o "$WORK/caddy" ./cmd/caddy && go build -o "$WORK/blockcaddy" ./bench/blockcaddy)
(cd "$PEER/pushbench" && go build -o "$WORK/pushbench" .)
for n in 1000 10000; do
  for server in blockcaddy:block.Caddyfile caddy:bench.Caddyfile; do
    bin=${server%%:*} conf=${server#*:}
    GOMAXPROCS=1 "$WORK/$bin" run --config "$HERE/$conf" > "$WORK/$bin.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:2099/config/" && break; sleep 0.1; done
    "$WORK/pushbench" -label "$bin" -scenario idle -subs "$n" -hold 3s -info=false -settle 2s \
      -pub 'http://127.0.0.1:18090/pub?id=%s' -sub 'http://127.0.0.1:18090/sub?id=%s' \
      -server-pid "$pid" -max-time 120s | grep -E '^\{' | python3 -c '
import json,sys
r=json.loads(sys.stdin.read()); print("%-10s N=%-6d RSS per idle waiter: %s bytes (errors %s)" % (r["label"], r["subs"], r.get("rss_bytes_per_sub"), r.get("sub_errors")))'
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done
