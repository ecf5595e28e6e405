#!/usr/bin/env bash
# How much of caddy-push's CPU per delivery is ours: the same long-poll load
# against caddy-push (bench.Caddyfile), bench_floor (the least a Caddy
# handler must do to pass fan-out and stream: bench/blockcaddy, on
# floor.Caddyfile, the same route shape) and nginx+nchan, plus the publish
# load against Caddy's respond handler; GOMAXPROCS=1 and worker_processes 1,
# each server fresh, in one run, the order of caddy-push and the floor
# alternating. Channel info is off for all (bench_floor has none). Prints
# caddy/floor, caddy/nchan and floor/nchan, and each CPU per delivery
# against respond's CPU per request.
#
#   bench/floor.sh [REPS]     fan-out 1000 x 50 and 5000 x 20, stream 100 x 10 s;
#                             REPS (2) times, about 4 minutes each
#
# Environment: PORT_BASE (18200: Caddy +0, its admin +1, nginx +2), WORK.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
REPS=${1:-2}
bench_setup /tmp/caddypush-bench floor
BASE=${PORT_BASE:-18200}
JSONL=$OUT/results.jsonl
build caddy ./cmd/caddy
build blockcaddy ./bench/blockcaddy
build pushbench ./cmd/pushbench

# on WHO REP ARGS...: one load against a fresh server.
on() {
  local who=$1 rep=$2 port=$BASE
  shift 2
  case $who in
    caddy) start_caddy caddy caddy bench.Caddyfile "$BASE" $((BASE + 1)) || return 0 ;;
    floor) start_caddy floor blockcaddy floor.Caddyfile "$BASE" $((BASE + 1)) || return 0 ;;
    respond) start_caddy respond caddy respond.Caddyfile "$BASE" $((BASE + 1)) || return 0 ;;
    nchan) port=$((BASE + 2)); start_nginx nchan "$port" || return 0 ;;
  esac
  pb "$who-$rep" "$JSONL" -info=false -settle 50ms -server-pid "$LAST_PID" \
    -pub "http://127.0.0.1:$port/pub?id=%s" -sub "http://127.0.0.1:$port/sub?id=%s" "$@"
  stop_servers
}

loads=("-scenario fanout -subs 1000 -rounds 50 -max-time 120s"
  "-scenario fanout -subs 5000 -rounds 20 -max-time 180s"
  "-scenario stream -subs 100 -duration 10s -window 200 -max-time 60s")
for rep in $(seq 1 "$REPS"); do
  order=(caddy floor)
  if [ $((rep % 2)) = 0 ]; then order=(floor caddy); fi
  for who in "${order[@]}" nchan; do
    for load in "${loads[@]}"; do
      # shellcheck disable=SC2086 # each load is a list of arguments
      on "$who" "r$rep" $load
    done
  done
  on respond "r$rep" -scenario publish -publishers 16 -channels 1 -duration 10s -max-time 60s
done
python3 "$HERE/summary.py" --ratio caddy/floor --ratio caddy/nchan --ratio floor/nchan "$JSONL" | tee "$OUT/summary.md"
echo "results: $OUT"
