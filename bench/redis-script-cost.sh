#!/usr/bin/env bash
# What the Redis store's Lua scripts cost inside redis-server: one Caddy
# (GOMAXPROCS=1, redis.Caddyfile) on a fresh redis-server without
# persistence, publish loads (16 publishers, 5 s, on 1 channel and on 1000)
# and a fan-out load (100 subscribers, 50 rounds) from cmd/pushbench, each followed by Redis's own
# INFO commandstats (EVALSHA's calls and microseconds per call; alike
# calls of one channel are coalesced, so a call may stand for several
# operations) and the server CPU per operation of Caddy + redis-server.
#
#   bench/redis-script-cost.sh
#
# Environment: PORT_BASE (18500: redis-server +3, Caddy +5, its admin +6), WORK.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-bench redis-script-cost
BASE=${PORT_BASE:-18500}
REDIS=$((BASE + 3))
JSONL=$OUT/results.jsonl
build caddy ./cmd/caddy
build pushbench ./cmd/pushbench
start_redis redis "$REDIS"
RP=$LAST_PID
start_caddy caddy caddy redis.Caddyfile $((BASE + 5)) $((BASE + 6)) REDIS="127.0.0.1:$REDIS"
CP=$LAST_PID
for load in "publish -publishers 16 -channels 1 -duration 5s -max-time 30s" \
  "publish -publishers 16 -channels 1000 -duration 5s -max-time 30s" \
  "fanout -subs 100 -rounds 50 -max-time 60s"; do
  redis-cli -p "$REDIS" config resetstat > /dev/null
  # shellcheck disable=SC2086 # the load is a list of arguments
  pb redis-r1 "$JSONL" -pub "http://127.0.0.1:$((BASE + 5))/pub?id=%s" -sub "http://127.0.0.1:$((BASE + 5))/sub?id=%s" \
    -server-pid "$CP,$RP" -scenario $load
  tail -n 1 "$JSONL" | tr ',' '\n' | grep -E '"scenario"|per_s"|server_cpu_us_per' | tr '\n' ' '
  echo
  echo "  $(redis-cli -p "$REDIS" info commandstats | grep -E '^cmdstat_evalsha' || echo 'no EVALSHA calls')"
done
echo "results: $OUT"
