#!/usr/bin/env bash
# Idle long-poll memory: caddy-push (bench.Caddyfile) against Caddy's floor,
# bench_block (bench/blockcaddy on block.Caddyfile: a handler that only
# holds the request until the client leaves), 1000 and 10,000 waiters, same
# tool, same run, GOMAXPROCS=1, each server fresh. Prints RSS and PSS per
# waiter and caddy/block.
#
#   bench/idle-floor.sh
#
# Environment: PORT_BASE (18300: Caddy +0, its admin +1), WORK.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-bench idle-floor
BASE=${PORT_BASE:-18300}
JSONL=$OUT/results.jsonl
build caddy ./cmd/caddy
build blockcaddy ./bench/blockcaddy
build pushbench ./cmd/pushbench
for n in 1000 10000; do
  for server in block:blockcaddy:block.Caddyfile caddy:caddy:bench.Caddyfile; do
    IFS=: read -r who bin conf <<< "$server"
    if start_caddy "$who" "$bin" "$conf" "$BASE" $((BASE + 1)); then
      pb "$who-r1" "$JSONL" -scenario idle -subs "$n" -hold 3s -info=false -settle 2s -max-time 120s \
        -pub "http://127.0.0.1:$BASE/pub?id=%s" -sub "http://127.0.0.1:$BASE/sub?id=%s" -server-pid "$LAST_PID"
    fi
    stop_servers
  done
done
python3 "$HERE/summary.py" --ratio caddy/block "$JSONL" | tee "$OUT/summary.md"
echo "results: $OUT"
