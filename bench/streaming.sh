#!/usr/bin/env bash
# Streaming transports: nginx+nchan, Centrifugo v6 and caddy-push, each on
# EventSource and WebSocket, driven by cmd/pushbench in one run:
#
#   - rate-driven fan-out: the same deliveries/s offered (publications/s x
#     subscribers) to 1000 and to 10,000 subscribers on one channel: server
#     CPU per delivery, latency p50/p99, lost, duplicated, out of order;
#   - idle: 10,000 open streams, one channel each: server memory per stream;
#   - publish to one subscriber over EventSource, 200 rounds: latency p50,
#     publishing with POST, and (caddy-push and nchan) over a WebSocket.
#
# Every server runs on one core (GOMAXPROCS=1, worker_processes 1) and is
# started fresh for each scenario and transport; the servers' order
# alternates between repetitions. A server or transport whose probe (one
# message to one subscriber) fails is skipped, so the script runs before
# caddy-push has its streaming transports (bench/stream.Caddyfile then
# fails to load) and compares all three after. It prints the tables with
# the ratios between servers of the same run, and writes SVG charts.
#
#   bench/streaming.sh [quick|full|slow|idle|latency] [REPS]    full: about 8 minutes a repetition
#     quick: 100 and 1000 subscribers, 1000 idle, 50 rounds (a smoke pass)
#     slow:  one EventSource subscriber that never reads beside 10 readers
#            (EventSource, then WebSocket), 100 MiB published in 64 KiB
#            messages to a channel that stores 16 (/pub_small): the server's
#            RSS growth against its stream queue (caddy-push's
#            stream_queue_size, 1 MiB), and what the readers lost; caddy-push
#            and nchan (Centrifugo's protocol is not the push protocol). Each
#            is also run without the non-reader (WHO_base): the growth the
#            load itself causes
#     idle:  full's idle scenario alone (10,000 streams), about 1 minute
#     latency: full's one-subscriber runs alone, with 2000 rounds, about 40 s a repetition
#
# Environment: PORT_BASE (18600: Caddy +0, its admin +1, nginx +2,
# Centrifugo +4), RATE (20000 deliveries/s), WORK (/tmp/caddypush-bench),
# SERVERS ("nchan centrifugo caddy"), BASELINE=REV to measure caddy-push as
# built at git revision REV too (the server "base", started as "caddy" is:
# caddy/base is a change's own ratio within the run), KEEP=1 to copy the tables and JSON
# lines to bench/results/. Needs Go; installs nginx + nchan from Debian and
# builds Centrifugo v6.9.1 (outside the repository) when missing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MODE=${1:-full}
REPS=${2:-1}
case $MODE in quick | full | slow | idle | latency) ;; *) echo "usage: $0 [quick|full|slow|idle|latency] [REPS]" >&2; exit 2 ;; esac
bench_setup /tmp/caddypush-bench "streaming-$MODE"
BASE=${PORT_BASE:-18600}
RATE=${RATE:-20000}
SERVERS=${SERVERS:-nchan centrifugo caddy}
if [ "$MODE" = slow ]; then SERVERS=${SERVERS/centrifugo/}; fi
PUB=/pub
if [ "$MODE" = slow ]; then PUB=/pub_small; fi
JSONL=$OUT/results.jsonl

build caddy ./cmd/caddy
build pushbench ./cmd/pushbench
build_centrifugo
if [ -n "${BASELINE:-}" ]; then
  rm -rf "$OUT/base-src"
  git -C "$ROOT" worktree add --force --detach "$OUT/base-src" "$BASELINE" >/dev/null
  (cd "$OUT/base-src" && go build -o "$BIN/caddy-base" ./cmd/caddy)
  git -C "$ROOT" worktree remove --force "$OUT/base-src"
  SERVERS="$SERVERS base"
fi

# start WHO: a fresh server; its pushbench arguments (except -sub) in ARGS.
start() {
  case $1 in
    caddy | base)
      local bin=caddy
      if [ "$1" = base ]; then bin=caddy-base; fi
      start_caddy "$1" "$bin" stream.Caddyfile "$BASE" $((BASE + 1)) || return 1
      ARGS=(-pub "http://127.0.0.1:$BASE$PUB?id=%s") ;;
    nchan)
      start_nginx nchan $((BASE + 2)) || return 1
      ARGS=(-pub "http://127.0.0.1:$((BASE + 2))$PUB?id=%s") ;;
    centrifugo)
      start_centrifugo centrifugo $((BASE + 4)) || return 1
      ARGS=(-server centrifugo -pub "http://127.0.0.1:$((BASE + 4))/api/publish" -api-key "$CENTRIFUGO_KEY") ;;
  esac
  ARGS+=(-server-pid "$LAST_PID")
}

# sub WHO TRANSPORT: the subscriber URL.
sub() {
  case $1/$2 in
    caddy/* | base/*) echo "http://127.0.0.1:$BASE/sub_stream?id=%s" ;;
    nchan/*) echo "http://127.0.0.1:$((BASE + 2))/sub_stream?id=%s" ;;
    centrifugo/eventsource) echo "http://127.0.0.1:$((BASE + 4))/connection/uni_sse" ;;
    centrifugo/websocket) echo "http://127.0.0.1:$((BASE + 4))/connection/uni_websocket" ;;
  esac
}

# Which servers and transports answer: one message to one subscriber each.
AVAILABLE=()
for who in $SERVERS; do
  if ! start "$who"; then
    echo "skipping $who: it did not start (see $OUT/$who.log)"
    continue
  fi
  for tr in eventsource websocket; do
    if probe "${ARGS[@]}" -transport "$tr" -sub "$(sub "$who" "$tr")"; then
      AVAILABLE+=("$who/$tr")
    else
      echo "skipping $who $tr: the probe failed (see $OUT/probe.log)"
    fi
  done
  stop_servers
done
echo "measuring: ${AVAILABLE[*]:-nothing}"
[ ${#AVAILABLE[@]} -gt 0 ] || exit 1

# run REP TRANSPORT PUSHBENCH-ARGS...: the load against every available
# server on TRANSPORT, each fresh, in this repetition's order.
run() {
  local rep=$1 tr=$2 who order=()
  shift 2
  for who in $SERVERS; do order+=("$who"); done
  if [ $((rep % 2)) = 0 ]; then
    local i rev=()
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[$i]}"); done
    order=("${rev[@]}")
  fi
  for who in "${order[@]}"; do
    [[ " ${AVAILABLE[*]} " == *" $who/$tr "* ]] || continue
    start "$who" || continue
    pb "$who${SUFFIX:-}-r$rep" "$JSONL" "${ARGS[@]}" -transport "$tr" -sub "$(sub "$who" "$tr")" "$@"
    stop_servers
  done
}

if [ "$MODE" = quick ]; then SIZES="100 1000" IDLE=1000 ROUNDS=50 DUR=5s; else SIZES="1000 10000" IDLE=10000 ROUNDS=200 DUR=15s; fi
if [ "$MODE" = latency ]; then ROUNDS=2000; fi
for rep in $(seq 1 "$REPS"); do
  if [ "$MODE" = slow ]; then
    for tr in eventsource websocket; do
      run "$rep" "$tr" -scenario slow -subs 10 -msg-size 65536 -total $((100 << 20)) -window 8 -max-time 300s
      SUFFIX=_base run "$rep" "$tr" -scenario slow -slow-subs 0 -subs 10 -msg-size 65536 -total $((100 << 20)) -window 8 -max-time 300s
    done
    continue
  fi
  if [ "$MODE" = idle ]; then
    for tr in eventsource websocket; do run "$rep" "$tr" -scenario idle -subs "$IDLE" -hold 3s -max-time 240s; done
    continue
  fi
  if [ "$MODE" != latency ]; then
    for tr in eventsource websocket; do
      for s in $SIZES; do
        run "$rep" "$tr" -scenario rate -subs "$s" -rate "$RATE" -duration "$DUR" -max-time 240s
      done
      run "$rep" "$tr" -scenario idle -subs "$IDLE" -hold 3s -max-time 240s
    done
  fi
  run "$rep" eventsource -scenario fanout -subs 1 -rounds "$ROUNDS" -max-time 120s
  # The same, each publication a frame on a publisher's WebSocket (nchan's
  # nchan_publisher takes them; Centrifugo publishes through its API).
  SERVERS=${SERVERS//centrifugo/} run "$rep" eventsource -scenario fanout -subs 1 -rounds "$ROUNDS" -pub-websocket -max-time 120s
done
stop_servers

python3 "$HERE/summary.py" --ratio caddy/nchan --ratio caddy/centrifugo --ratio centrifugo/nchan --ratio caddy/base "$JSONL" |
  tee "$OUT/summary.md"
"$HERE/plot.sh" -out "$OUT/charts" "$JSONL" || echo "charts not written (see above)"
keep_results "$JSONL"
echo "results: $OUT"
