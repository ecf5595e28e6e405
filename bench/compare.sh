#!/usr/bin/env bash
# caddy-push against nginx+nchan on the long-poll protocol, scenario by
# scenario in one run, plus the publish load against Caddy's own respond
# handler on the same route shape (the ceiling for any Caddy handler); then
# the tables and the ratios caddy/nchan and caddy/respond. Caddy runs with
# GOMAXPROCS=1 (bench/bench.Caddyfile: buffer 2000, message timeout 1h),
# nginx with worker_processes 1 (bench/nchan.conf); each server is started
# fresh for each scenario.
#
#   bench/compare.sh            fan-out 100/1000/5000, publish (16 publishers,
#                               1 and 1000 channels), idle 1000/10000, stream
#                               (about 8 minutes)
#   bench/compare.sh quick      a short smoke pass
#   bench/compare.sh stream     only the stream scenario (100 subscribers, 10 s)
#   bench/compare.sh publish    only publish against respond (1 and 1000
#                               channels), three times, in alternating order
#   bench/compare.sh wspublish  publishing over WebSocket (a socket per
#                               publisher and channel, each frame answered
#                               with channel info) and with POST, on both
#                               servers, 1 and 1000 channels, three times
#   bench/compare.sh catchup    long-poll clients taking 1000 stored
#                               messages on each of 50 channels, one per
#                               poll (/sub, one client a channel) and with
#                               every waiting message in one answer
#                               (/sub_all, 20 clients a channel:
#                               caddy-push's longpoll_multipart_response
#                               on, nchan's nchan_longpoll_multipart_response
#                               on), on both servers, three times (about
#                               1 minute)
#
# Environment: PORT_BASE (18100: Caddy +0, its admin +1, nginx +2), WORK
# (/tmp/caddypush-bench), KEEP=1 (copy the tables and JSON lines to
# bench/results/). Installs nginx + nchan from Debian when missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MODE=${1:-full}
bench_setup /tmp/caddypush-bench "compare-$MODE"
BASE=${PORT_BASE:-18100}
JSONL=$OUT/results.jsonl
build caddy ./cmd/caddy
build pushbench ./cmd/pushbench

# on WHO REP ARGS...: one load against a fresh caddy-push, respond Caddy or nchan.
on() {
  local who=$1 rep=$2 port=$BASE
  shift 2
  case $who in
    caddy) start_caddy caddy caddy bench.Caddyfile "$BASE" $((BASE + 1)) || return 0 ;;
    respond) start_caddy respond caddy respond.Caddyfile "$BASE" $((BASE + 1)) || return 0
      set -- -info=false "$@" ;;
    nchan) port=$((BASE + 2)); start_nginx nchan "$port" || return 0 ;;
  esac
  pb "$who${LABEL_SUFFIX:-}-$rep" "$JSONL" -pub "http://127.0.0.1:$port/pub?id=%s" -sub "http://127.0.0.1:$port${SUB:-/sub}?id=%s" \
    -server-pid "$LAST_PID" "$@"
  stop_servers
}
both() { on caddy "$@"; on nchan "$@"; }

case $MODE in
  quick)
    both r1 -scenario fanout -subs 100 -rounds 20 -max-time 60s
    both r1 -scenario publish -publishers 16 -channels 1 -duration 2s -max-time 30s
    on respond r1 -scenario publish -publishers 16 -channels 1 -duration 2s -max-time 30s
    both r1 -scenario idle -subs 1000 -hold 1s -max-time 60s ;;
  stream)
    both r1 -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s ;;
  publish)
    for rep in 1 2 3; do
      for c in 1 1000; do
        load=(-scenario publish -publishers 16 -channels "$c" -duration 10s -max-time 60s)
        if [ $((rep % 2)) = 1 ]; then
          on caddy "r$rep" "${load[@]}"; on respond "r$rep" "${load[@]}"
        else
          on respond "r$rep" "${load[@]}"; on caddy "r$rep" "${load[@]}"
        fi
      done
    done ;;
  wspublish)
    for rep in 1 2 3; do
      for c in 1 1000; do
        for tr in websocket longpoll; do
          both "r$rep" -scenario publish -transport "$tr" -publishers 16 -channels "$c" -duration 10s -max-time 60s
        done
      done
    done ;;
  catchup)
    for rep in 1 2 3; do
      both "r$rep" -scenario catchup -channels 50 -rounds 1000 -subs 1 -max-time 120s
      SUB=/sub_all LABEL_SUFFIX=_all both "r$rep" -scenario catchup -channels 50 -rounds 1000 -subs 20 -max-time 120s
    done ;;
  full)
    both r1 -scenario fanout -subs 100 -rounds 200 -max-time 120s
    both r1 -scenario fanout -subs 1000 -rounds 50 -max-time 120s
    both r1 -scenario fanout -subs 5000 -rounds 20 -max-time 180s
    for c in 1 1000; do
      both r1 -scenario publish -publishers 16 -channels "$c" -duration 10s -max-time 60s
      on respond r1 -scenario publish -publishers 16 -channels "$c" -duration 10s -max-time 60s
    done
    both r1 -scenario idle -subs 1000 -hold 3s -max-time 90s
    both r1 -scenario idle -subs 10000 -hold 3s -max-time 120s
    both r1 -scenario stream -subs 100 -duration 10s -window 200 -max-time 60s ;;
  *) echo "usage: $0 [full|quick|stream|publish|wspublish|catchup]" >&2; exit 2 ;;
esac
ratios=(--ratio caddy/nchan --ratio caddy/respond)
if [ "$MODE" = catchup ]; then ratios=(--ratio caddy/nchan --ratio caddy_all/nchan_all --ratio caddy_all/caddy); fi
python3 "$HERE/summary.py" "${ratios[@]}" "$JSONL" | tee "$OUT/summary.md"
keep_results "$JSONL"
echo "results: $OUT"
