#!/usr/bin/env bash
# Runs the same pushbench load against caddy-push (GOMAXPROCS=1) and against
# nginx + nchan (worker_processes 1), scenario by scenario in one run, plus
# the publish load against Caddy's own respond handler (the ceiling for any
# Caddy handler), then prints the result tables and the ratios.
#
#   bench/compare.sh            fan-out 100/1000/5000, publish (16 publishers,
#                               1 and 1000 channels), idle 1000/10000, stream
#   bench/compare.sh quick      a short smoke pass
#   bench/compare.sh stream     only the stream scenario (100 subscribers, 10 s)
#   bench/compare.sh publish    only publish against respond (1 and 1000
#                               channels), three times, in alternating order
#
# Needs ../shared/peer (PEER=dir to override); installs nginx + nchan through
# shared/peer/run-nchan.sh. Loopback only; every run is bounded by -max-time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-bench results

(cd "$ROOT" && go build -o "$WORK/caddy" ./cmd/caddy)
(cd "$PEER/pushbench" && go build -o "$WORK/pushbench" .)
export PB=$WORK/pushbench OUTDIR=$OUT

CADDY_PID=""
stop_caddy() {
  if [ -n "$CADDY_PID" ]; then
    kill "$CADDY_PID" 2>/dev/null || true
    wait "$CADDY_PID" 2>/dev/null || true
    CADDY_PID=""
  fi
}
trap stop_caddy EXIT

start_caddy() { # $1 = Caddyfile (default bench.Caddyfile)
  stop_caddy
  GOMAXPROCS=1 "$WORK/caddy" run --config "$HERE/${1:-bench.Caddyfile}" > "$OUT/caddy.log" 2>&1 &
  CADDY_PID=$!
  for _ in $(seq 1 100); do
    curl -s -o /dev/null -X POST "http://127.0.0.1:18090/pub?id=ready" && break
    sleep 0.1
  done
}

# both LABEL-SUFFIX ARGS...: the same pushbench run against a fresh Caddy,
# then against a fresh nginx+nchan.
both() {
  local sfx=$1; shift
  start_caddy
  timeout 300 "$PB" -label "caddy-$sfx" -pub 'http://127.0.0.1:18090/pub?id=%s' \
    -sub 'http://127.0.0.1:18090/sub?id=%s' -server-pid "$CADDY_PID" \
    -json-out "$OUT/caddy.jsonl" "$@" | tail -n +1 >> "$OUT/run.log"
  stop_caddy
  "$PEER/run-nchan.sh" one 1 "nchan-$sfx" "$@" >> "$OUT/run.log" 2>&1
}

# caddy_only LABEL CADDYFILE ARGS...: one pushbench run against a fresh Caddy.
caddy_only() {
  local label=$1 conf=$2; shift 2
  start_caddy "$conf"
  timeout 300 "$PB" -label "$label" -pub 'http://127.0.0.1:18090/pub?id=%s' \
    -sub 'http://127.0.0.1:18090/sub?id=%s' -server-pid "$CADDY_PID" \
    -json-out "$OUT/caddy.jsonl" "$@" >> "$OUT/run.log"
  stop_caddy
}

# respond LABEL-SUFFIX ARGS...: the publish load against Caddy's respond
# handler on the same route shape: the ceiling for any Caddy handler.
respond() {
  local sfx=$1; shift
  caddy_only "respond-$sfx" respond.Caddyfile -info=false "$@"
}

if [ "${1:-full}" = quick ]; then
  both quick -scenario fanout -subs 100 -rounds 20 -max-time 60s
  both quick -scenario publish -publishers 16 -channels 1 -duration 2s -max-time 30s
  respond quick -scenario publish -publishers 16 -channels 1 -duration 2s -max-time 30s
  both quick -scenario idle -subs 1000 -hold 1s -max-time 60s
elif [ "${1:-full}" = stream ]; then
  both r1 -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s
elif [ "${1:-full}" = publish ]; then
  for rep in 1 2 3; do
    for c in 1 1000; do
      load=(-scenario publish -publishers 16 -channels "$c" -duration 10s -max-time 60s)
      if [ $((rep % 2)) = 1 ]; then
        caddy_only "caddy-r$rep" bench.Caddyfile "${load[@]}"; respond "r$rep" "${load[@]}"
      else
        respond "r$rep" "${load[@]}"; caddy_only "caddy-r$rep" bench.Caddyfile "${load[@]}"
      fi
    done
  done
else
  both r1 -scenario fanout -subs 100 -rounds 200 -max-time 120s
  both r1 -scenario fanout -subs 1000 -rounds 50 -max-time 120s
  both r1 -scenario fanout -subs 5000 -rounds 20 -max-time 180s
  both r1 -scenario publish -publishers 16 -channels 1 -duration 10s -max-time 60s
  both r1 -scenario publish -publishers 16 -channels 1000 -duration 10s -max-time 60s
  respond r1 -scenario publish -publishers 16 -channels 1 -duration 10s -max-time 60s
  respond r1 -scenario publish -publishers 16 -channels 1000 -duration 10s -max-time 60s
  both r1 -scenario idle -subs 1000 -hold 3s -max-time 90s
  both r1 -scenario idle -subs 10000 -hold 3s -max-time 120s
  both r1 -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s
fi
stop_caddy

python3 "$PEER/summarize.py" "$OUT"/*.jsonl | tee "$OUT/summary.md"
python3 "$HERE/ratios.py" "$OUT"/*.jsonl | tee "$OUT/ratios.md"
echo "results: $OUT"
