#!/usr/bin/env bash
# How much of caddy-push's CPU per delivery is ours: the same pushbench load
# against caddy-push (bench.Caddyfile), against bench_floor (the least a Caddy
# handler must do to pass fan-out and stream, bench/blockcaddy/floor.go) and
# against nginx+nchan, plus the publish load against Caddy's respond handler;
# GOMAXPROCS=1 and worker_processes 1, each server fresh, in one run. Channel
# info is off for all (bench_floor has none), so the figures differ a little
# from compare.sh's.
#
#   bench/floor.sh [REPS]     fan-out 1000 x 50 and 5000 x 20, stream 100 x 10 s; REPS (2) times
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-bench floor
(cd "$ROOT" && go build -o "$WORK/caddy" ./cmd/caddy && go build -o "$WORK/blockcaddy" ./bench/blockcaddy)
(cd "$PEER/pushbench" && go build -o "$WORK/pushbench" .)

PID=""
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap stop EXIT

# run LABEL BINARY CADDYFILE PUSHBENCH-ARGS...
run() {
  local label=$1 bin=$2 conf=$3; shift 3
  stop
  GOMAXPROCS=1 "$WORK/$bin" run --config "$HERE/$conf" > "$OUT/$label.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:2099/config/" && break; sleep 0.1; done
  timeout 300 "$WORK/pushbench" -label "$label" -info=false -settle 50ms \
    -pub 'http://127.0.0.1:18090/pub?id=%s' -sub 'http://127.0.0.1:18090/sub?id=%s' \
    -server-pid "$PID" -json-out "$OUT/floor.jsonl" "$@" >> "$OUT/run.log"
  stop
}

for rep in $(seq 1 "${1:-2}"); do
  pair=("caddy caddy bench.Caddyfile" "floor blockcaddy floor.Caddyfile")
  [ $((rep % 2)) = 0 ] && pair=("${pair[1]}" "${pair[0]}")
  for s in "${pair[@]}"; do
    set -- $s
    run "$1-r$rep" "$2" "$3" -scenario fanout -subs 1000 -rounds 50 -max-time 120s
    run "$1-r$rep" "$2" "$3" -scenario fanout -subs 5000 -rounds 20 -max-time 180s
    run "$1-r$rep" "$2" "$3" -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s
  done
  for sc in "-scenario fanout -subs 1000 -rounds 50 -max-time 120s" \
            "-scenario fanout -subs 5000 -rounds 20 -max-time 180s" \
            "-scenario stream -subs 100 -duration 10s -window 200 -max-time 60s"; do
    # shellcheck disable=SC2086
    OUTDIR=$OUT PB=$WORK/pushbench "$PEER/run-nchan.sh" one 1 "nchan-r$rep" -info=false -settle 50ms $sc >> "$OUT/run.log" 2>&1
  done
  run "respond-r$rep" caddy respond.Caddyfile -scenario publish -publishers 16 -channels 1 -duration 10s -max-time 60s
done
python3 "$HERE/floor-ratios.py" "$OUT"/*.jsonl | tee "$OUT/ratios.md"
echo "results: $OUT"
