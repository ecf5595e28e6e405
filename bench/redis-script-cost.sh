#!/usr/bin/env bash
# Measures what the Redis store's Lua scripts cost inside redis-server: one
# Caddy (GOMAXPROCS=1) on a fresh redis-server, a publish load and a fan-out
# load from cmd/pushbench, then Redis's own INFO commandstats (EVALSHA's
# microseconds per call, and the inner commands'). Loopback only, bounded.
#
#   bench/redis-script-cost.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup /tmp/caddypush-scriptcost
(cd "$ROOT" && go build -o "$WORK/caddy" ./cmd/caddy && go build -o "$WORK/pushbench" ./cmd/pushbench)
if redis-cli -p 18379 ping >/dev/null 2>&1; then echo "port 18379 is taken" >&2; exit 1; fi
redis-server --port 18379 --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" --daemonize no \
  --logfile "$WORK/redis.log" &
RP=$!
PORT=18091 ADMIN=127.0.0.1:2101 REDIS=127.0.0.1:18379 GOMAXPROCS=1 "$WORK/caddy" run \
  --config "$HERE/redis.Caddyfile" > "$WORK/caddy.log" 2>&1 &
CP=$!
trap 'kill $CP $RP 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null http://127.0.0.1:18091/pub?id=ready && break; sleep 0.1; done
pb() { timeout 120 "$WORK/pushbench" -pub 'http://127.0.0.1:18091/pub?id=%s' \
  -sub 'http://127.0.0.1:18091/sub?id=%s' -server-pid "$CP,$RP" "$@"; }
redis-cli -p 18379 config resetstat >/dev/null
pb -scenario publish -publishers 16 -channels 1 -duration 5s -max-time 30s | tr ',' '\n' | grep -E 'per_s|cpu'
echo "publish: $(redis-cli -p 18379 info commandstats | grep -E '^cmdstat_evalsha')"
redis-cli -p 18379 config resetstat >/dev/null
pb -scenario fanout -subs 100 -rounds 50 -max-time 60s | tr ',' '\n' | grep -E 'per_s|cpu'
echo "fanout:  $(redis-cli -p 18379 info commandstats | grep -E '^cmdstat_evalsha')"
