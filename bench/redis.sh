#!/usr/bin/env bash
# The Redis store against the memory store and nginx+nchan, in one run and
# with one load tool: caddy-push on the memory store (one Caddy), caddy-push
# on the Redis store (two Caddys sharing one redis-server without
# persistence; the fan-out's subscribers split over both, publications sent
# to the first), nchan on its memory store and nchan on Redis
# (nchan_redis_url, bench/nchan-redis.conf, its own fresh redis-server of
# the same build); nginx runs worker_processes 1. Every Caddy runs with
# GOMAXPROCS=1. Server CPU is summed over every process of a setup: the
# Caddy; both Caddys and redis-server; nginx's master and worker (and
# redis-server). Prints redis/memory, redis/nchan and redis/nchan_redis.
#
#   bench/redis.sh          fan-out 1000 (50 rounds) by long-poll and by
#                           EventSource, publish 16 publishers on 1 and
#                           1000 channels (10 s each)
#   bench/redis.sh quick    a short smoke pass
#   bench/redis.sh more     fan-out 5000 (20 rounds) and stream (100
#                           subscribers re-polling, 10 s)
#   bench/redis.sh wspublish  publish over WebSocket (a socket per publisher
#                           and channel) and with POST, 16 publishers on 1
#                           and 1000 channels (10 s each)
#
# Environment: PORT_BASE (18400: memory Caddy +0 and admin +1, nginx +2,
# redis-server +3, Redis Caddys +5/+7 and admins +6/+8, nginx on Redis +9
# and its redis-server +10), WORK, KEEP=1 to copy the tables and JSON lines
# to bench/results/. Needs
# redis-server; installs nginx + nchan from Debian when missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MODE=${1:-full}
bench_setup /tmp/caddypush-bench "redis-$MODE"
BASE=${PORT_BASE:-18400}
JSONL=$OUT/results.jsonl
build caddy ./cmd/caddy
build pushbench ./cmd/pushbench

# urls PUB-PORT SUB-PORT: the publisher and subscriber URLs (the
# subscriber's path is SUB, /sub by default: /sub_stream for streams).
urls() { echo "-pub http://127.0.0.1:$1/pub?id=%s -sub http://127.0.0.1:$2${SUB:-/sub}?id=%s"; }

# run ARGS...: one load against the four setups, each fresh.
run() {
  local conf=bench.Caddyfile # long-poll alone, as in the long-poll benches
  if [ "${SUB:-/sub}" != /sub ]; then conf=stream.Caddyfile; fi
  if start_caddy memory caddy "$conf" "$BASE" $((BASE + 1)); then
    # shellcheck disable=SC2046
    pb memory-r1 "$JSONL" $(urls "$BASE" "$BASE") -server-pid "$LAST_PID" "$@"
  fi
  stop_servers

  local redis=$((BASE + 3)) a b r
  if start_redis redis "$redis" && r=$LAST_PID &&
    start_caddy redis-a caddy redis.Caddyfile $((BASE + 5)) $((BASE + 6)) REDIS="127.0.0.1:$redis" && a=$LAST_PID &&
    start_caddy redis-b caddy redis.Caddyfile $((BASE + 7)) $((BASE + 8)) REDIS="127.0.0.1:$redis" && b=$LAST_PID; then
    pb redis-r1 "$JSONL" -pub "http://127.0.0.1:$((BASE + 5))/pub?id=%s" \
      -sub "http://127.0.0.1:$((BASE + 5))${SUB:-/sub}?id=%s,http://127.0.0.1:$((BASE + 7))${SUB:-/sub}?id=%s" \
      -server-pid "$a,$b,$r" "$@"
  fi
  stop_servers

  if start_nginx nchan $((BASE + 2)); then
    # shellcheck disable=SC2046
    pb nchan-r1 "$JSONL" $(urls $((BASE + 2)) $((BASE + 2))) -server-pid "$LAST_PID" "$@"
  fi
  stop_servers

  local nredis=$((BASE + 10)) n
  if start_redis nchan-redis-server "$nredis" && r=$LAST_PID &&
    REDIS_PORT=$nredis start_nginx nchan-redis $((BASE + 9)) nchan-redis.conf && n=$LAST_PID; then
    # shellcheck disable=SC2046
    pb nchan_redis-r1 "$JSONL" $(urls $((BASE + 9)) $((BASE + 9))) -server-pid "$n,$r" "$@"
  fi
  stop_servers
}

case $MODE in
  more)
    run -scenario fanout -subs 5000 -rounds 20 -max-time 180s
    run -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s ;;
  quick)
    run -scenario fanout -subs 100 -rounds 10 -max-time 60s
    SUB=/sub_stream run -scenario fanout -transport eventsource -subs 100 -rounds 10 -max-time 60s
    run -scenario publish -publishers 16 -channels 1 -duration 2s -max-time 30s ;;
  full)
    run -scenario fanout -subs 1000 -rounds 50 -max-time 120s
    SUB=/sub_stream run -scenario fanout -transport eventsource -subs 1000 -rounds 50 -max-time 120s
    run -scenario publish -publishers 16 -channels 1 -duration 10s -max-time 60s
    run -scenario publish -publishers 16 -channels 1000 -duration 10s -max-time 60s ;;
  wspublish)
    for c in 1 1000; do
      run -scenario publish -transport websocket -publishers 16 -channels "$c" -duration 10s -max-time 60s
      run -scenario publish -publishers 16 -channels "$c" -duration 10s -max-time 60s
    done ;;
  *) echo "usage: $0 [full|quick|more|wspublish]" >&2; exit 2 ;;
esac
python3 "$HERE/summary.py" --ratio redis/memory --ratio redis/nchan --ratio redis/nchan_redis "$JSONL" | tee "$OUT/summary.md"
keep_results "$JSONL"
echo "results: $OUT"
