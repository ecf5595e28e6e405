#!/usr/bin/env bash
# Runs, in one run and with one load tool (cmd/pushbench), the same loads
# against caddy-push on the memory store (one Caddy), caddy-push on the
# Redis store (two Caddys sharing one redis-server, subscribers split over
# both) and nginx + nchan (worker_processes 1), then prints the ratios.
# Every Caddy runs with GOMAXPROCS=1. Server CPU is summed over every
# process of the setup: the Caddy, both Caddys and redis-server, or nginx's
# master and worker.
#
#   bench/redis.sh          fan-out 1000 (50 rounds), publish 16 publishers
#                           on 1 and 1000 channels (10 s each)
#   bench/redis.sh quick    a short smoke pass
#   bench/redis.sh more     fan-out 5000 (20 rounds) and stream (100
#                           subscribers re-polling, 10 s)
#
# Needs redis-server and nginx with nchan (Debian: redis-server, nginx-light,
# libnginx-mod-nchan). Loopback only; every run is bounded by -max-time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-redisbench results
for bin in redis-server nginx; do
  command -v "$bin" >/dev/null || { echo "need $bin (see the header)" >&2; exit 1; }
done

(cd "$ROOT" && go build -o "$WORK/caddy" ./cmd/caddy && go build -o "$WORK/pushbench" ./cmd/pushbench)
PB=$WORK/pushbench

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  if [ -f "$WORK/nginx/nginx.pid" ]; then kill -QUIT "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true; fi
  sleep 0.3
}
trap cleanup EXIT

wait_http() { # URL
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2; exit 1
}

start_redis() {
  if redis-cli -p 18379 ping >/dev/null 2>&1; then
    echo "port 18379 is taken by another redis-server" >&2; exit 1
  fi
  redis-server --port 18379 --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
    --logfile "$OUT/redis.log" --daemonize no &
  PIDS+=($!); REDIS_PID=$!
  for _ in $(seq 1 50); do
    redis-cli -p 18379 ping >/dev/null 2>&1 && kill -0 "$REDIS_PID" && return 0
    sleep 0.1
  done
  echo "redis did not start" >&2; exit 1
}

start_caddy() { # PORT ADMIN CONFIG
  PORT=$1 ADMIN=$2 REDIS=127.0.0.1:18379 GOMAXPROCS=1 "$WORK/caddy" run --config "$3" \
    > "$OUT/caddy-$1.log" 2>&1 &
  PIDS+=($!); LAST_PID=$!
  wait_http "http://127.0.0.1:$1/pub?id=ready"
}

start_nginx() {
  mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
  ln -sfn /usr/lib/nginx/modules "$WORK/nginx/modules"
  nginx -p "$WORK/nginx/" -c "$PEER/nchan.conf"
  wait_http "http://127.0.0.1:18082/pub?id=ready"
  local master; master=$(cat "$WORK/nginx/nginx.pid")
  NGINX_PIDS="$master,$(pgrep -P "$master" | paste -sd, -)"
}

pb() { # LABEL PUB SUB PIDS ARGS...
  local label=$1 pub=$2 sub=$3 pids=$4; shift 4
  timeout 300 "$PB" -label "$label" -pub "$pub" -sub "$sub" -server-pid "$pids" \
    -json-out "$OUT/results.jsonl" "$@" >> "$OUT/run.log"
}

# run ARGS...: one load against the three setups, each fresh.
run() {
  start_caddy 18090 127.0.0.1:2099 "$HERE/bench.Caddyfile"
  pb memory 'http://127.0.0.1:18090/pub?id=%s' 'http://127.0.0.1:18090/sub?id=%s' "$LAST_PID" "$@"
  cleanup

  start_redis
  start_caddy 18091 127.0.0.1:2101 "$HERE/redis.Caddyfile"; A=$LAST_PID
  start_caddy 18092 127.0.0.1:2102 "$HERE/redis.Caddyfile"; B=$LAST_PID
  pb redis 'http://127.0.0.1:18091/pub?id=%s' \
    'http://127.0.0.1:18091/sub?id=%s,http://127.0.0.1:18092/sub?id=%s' "$A,$B,$REDIS_PID" "$@"
  cleanup

  start_nginx
  pb nchan 'http://127.0.0.1:18082/pub?id=%s' 'http://127.0.0.1:18082/sub?id=%s' "$NGINX_PIDS" "$@"
  cleanup
}

if [ "${1:-full}" = more ]; then
  run -scenario fanout -subs 5000 -rounds 20 -max-time 180s
  run -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s
elif [ "${1:-full}" = quick ]; then
  run -scenario fanout -subs 100 -rounds 10 -max-time 60s
  run -scenario publish -publishers 16 -channels 1 -duration 2s -max-time 30s
else
  run -scenario fanout -subs 1000 -rounds 50 -max-time 120s
  run -scenario publish -publishers 16 -channels 1 -duration 10s -max-time 60s
  run -scenario publish -publishers 16 -channels 1000 -duration 10s -max-time 60s
fi
python3 "$HERE/redis-ratios.py" "$OUT/results.jsonl" | tee "$OUT/ratios.md"
echo "results: $OUT"
