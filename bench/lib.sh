# bench/lib.sh: the shell library of the bench scripts. Source it after
# `set -euo pipefail`:
#
#   . "$(dirname "$0")/lib.sh"
#   bench_setup /tmp/caddypush-bench compare     # WORK, OUT, ulimit, trap
#   build caddy ./cmd/caddy; build pushbench ./cmd/pushbench
#   start_caddy caddy caddy bench.Caddyfile 18100 18101 && pb caddy-r1 ... ; stop_servers
#
# Every server is started on the ports it is given, on 127.0.0.1 only, is
# health-checked before use and is stopped by stop_servers (and on exit, by
# the trap bench_setup installs). Every load run goes through pb, bounded by
# pushbench's -max-time and by `timeout`.
#
# Servers:  start_caddy (caddy-push, bench_floor/bench_block Caddys; GOMAXPROCS=1)
#           start_nginx (nginx + nchan, worker_processes 1; installed from Debian when missing)
#           start_redis (redis-server without persistence)
#           start_centrifugo (Centrifugo v6, GOMAXPROCS=1; built with go install when missing)
# Each sets LAST_PID (the pid to give pushbench's -server-pid).

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# Centrifugo is built outside the repository, once per machine.
CENTRIFUGO_VERSION=${CENTRIFUGO_VERSION:-v6.9.1}
CENTRIFUGO_BIN=${CENTRIFUGO_BIN:-$HOME/.cache/caddy-push-bench/bin/centrifugo}
CENTRIFUGO_KEY=pushbench-loopback-key # http_api.key in bench/centrifugo.json

BENCH_PIDS=()

# bench_setup DEFAULT-WORK [RESULTS-PREFIX]: sets WORK (the WORK variable,
# else $1) and OUT (WORK, or with a prefix a fresh folder WORK/PREFIX-<UTC
# time>), raises the open-files limit to the hard limit (thousands of
# subscribers each hold a descriptor) and stops every server on exit.
bench_setup() {
  WORK=${WORK:-$1}
  OUT=$WORK
  if [ -n "${2:-}" ]; then OUT=$WORK/$2-$(date -u +%Y%m%dT%H%M%SZ); fi
  BIN=$OUT/bin
  mkdir -p "$OUT" "$BIN"
  ulimit -n "$(ulimit -Hn)" || true
  trap stop_servers EXIT
  trap 'exit 130' INT TERM
  echo "results: $OUT (open files: $(ulimit -n))"
}

# build NAME PACKAGE: go build PACKAGE (relative to the repository) into
# $BIN/NAME (BIN is $OUT/bin: runs sharing a WORK do not share binaries).
build() {
  (cd "$ROOT" && go build -o "$BIN/$1" "$2")
}

# stop_pid PID: SIGTERM, up to 10 s for it to go, then SIGKILL.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# stop_servers: stops every server this script started (newest first).
stop_servers() {
  local i
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${BENCH_PIDS[$i]}"; done
  BENCH_PIDS=()
}

# port_free PORT: true when nothing listens on 127.0.0.1:PORT.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_http PID URL: waits up to 10 s for any HTTP answer from URL while
# PID lives.
wait_http() {
  local code
  for _ in $(seq 1 100); do
    kill -0 "$1" 2>/dev/null || return 1
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$2" || true)
    [ "$code" != 000 ] && [ -n "$code" ] && return 0
    sleep 0.1
  done
  return 1
}

# _started NAME PID CHECK-URL: tracks PID and health-checks it.
_started() {
  BENCH_PIDS+=("$2")
  LAST_PID=$2
  if ! wait_http "$2" "$3"; then
    echo "$1 did not start (log: $OUT/$1.log)" >&2
    tail -n 5 "$OUT/$1.log" >&2 || true
    stop_pid "$2"
    return 1
  fi
}

# start_caddy NAME BINARY CADDYFILE PORT ADMIN-PORT [VAR=VALUE...]: runs
# $BIN/BINARY with bench/CADDYFILE, GOMAXPROCS=1; the Caddyfile reads
# {$PORT} and {$ADMIN} (and any VAR given) from the environment.
start_caddy() {
  local name=$1 bin=$2 conf=$3 port=$4 admin=$5
  shift 5
  port_free "$port" || { echo "port $port is taken" >&2; return 1; }
  env PORT="$port" ADMIN="127.0.0.1:$admin" GOMAXPROCS=1 "$@" \
    "$BIN/$bin" run --config "$HERE/$conf" --adapter caddyfile > "$OUT/$name.log" 2>&1 &
  _started "$name" $! "http://127.0.0.1:$admin/config/"
}

# install_nchan: installs nginx-light and libnginx-mod-nchan from Debian when
# missing, without letting the package start a system nginx on port 80.
install_nchan() {
  command -v nginx >/dev/null && [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] && return 0
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light libnginx-mod-nchan ||
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light libnginx-mod-nchan; }
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
}

# start_nginx NAME PORT [CONF]: nginx + nchan in the foreground (so it is
# ours to stop) with prefix $OUT/NAME and bench/CONF (default nchan.conf)
# listening on PORT (and using the redis-server on REDIS_PORT, for a CONF
# that names 127.0.0.1:REDISPORT).
start_nginx() {
  local name=$1 port=$2 conf=${3:-nchan.conf}
  local prefix=$OUT/$name
  install_nchan
  port_free "$port" || { echo "port $port is taken" >&2; return 1; }
  mkdir -p "$prefix/logs" "$prefix/tmp"
  ln -sfn /usr/lib/nginx/modules "$prefix/modules"
  sed -e "s/127\.0\.0\.1:PORT/127.0.0.1:$port/" -e "s/127\.0\.0\.1:REDISPORT/127.0.0.1:${REDIS_PORT:-6379}/" \
    "$HERE/$conf" > "$prefix/nginx.conf"
  nginx -p "$prefix/" -c "$prefix/nginx.conf" -g 'daemon off;' > "$OUT/$name.log" 2>&1 &
  _started "$name" $! "http://127.0.0.1:$port/pub?id=ready"
}

# start_redis NAME PORT: redis-server without persistence.
start_redis() {
  local name=$1 port=$2
  command -v redis-server >/dev/null || { echo "need redis-server (Debian: redis-server)" >&2; return 1; }
  port_free "$port" || { echo "port $port is taken" >&2; return 1; }
  mkdir -p "$OUT/$name-data"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/$name-data" \
    --logfile "$OUT/$name.log" --daemonize no &
  BENCH_PIDS+=($!)
  LAST_PID=$!
  for _ in $(seq 1 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$name did not start" >&2
  return 1
}

# build_centrifugo: go install Centrifugo into the cache outside the
# repository when it is not there (the first build takes minutes).
build_centrifugo() {
  [ -x "$CENTRIFUGO_BIN" ] && return 0
  echo "building Centrifugo $CENTRIFUGO_VERSION into $(dirname "$CENTRIFUGO_BIN") (takes minutes)"
  mkdir -p "$(dirname "$CENTRIFUGO_BIN")"
  (cd /tmp && GOBIN=$(dirname "$CENTRIFUGO_BIN") GOFLAGS=-mod=mod \
    go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION")
}

# start_centrifugo NAME PORT: Centrifugo with bench/centrifugo.json on PORT,
# GOMAXPROCS=1.
start_centrifugo() {
  local name=$1 port=$2
  build_centrifugo
  port_free "$port" || { echo "port $port is taken" >&2; return 1; }
  (cd "$OUT" && exec env GOMAXPROCS=1 CENTRIFUGO_HTTP_SERVER_PORT="$port" \
    "$CENTRIFUGO_BIN" --config "$HERE/centrifugo.json") > "$OUT/$name.log" 2>&1 &
  _started "$name" $! "http://127.0.0.1:$port/health"
}

# keep_results JSONL: with KEEP=1, copies the run's summary.md and its JSON
# lines to bench/results/, named after the run's folder.
keep_results() {
  [ "${KEEP:-0}" = 1 ] || return 0
  local stamp
  stamp=$(basename "$OUT")
  mkdir -p "$HERE/results"
  cp "$OUT/summary.md" "$HERE/results/$stamp.md"
  cp "$1" "$HERE/results/$stamp.jsonl"
  echo "kept: bench/results/$stamp.{md,jsonl}"
}

# pb LABEL JSONL ARGS...: one pushbench run, its JSON appended to JSONL and
# its output to $OUT/run.log; a failed run is reported, not fatal.
pb() {
  local label=$1 jsonl=$2
  shift 2
  echo "+ pushbench -label $label $*" >> "$OUT/run.log"
  if ! timeout --kill-after=10 900 "$BIN/pushbench" -label "$label" -json-out "$jsonl" "$@" >> "$OUT/run.log" 2>&1; then
    echo "  run $label failed: $(tail -n 1 "$OUT/run.log" | cut -c1-300)" | tee -a "$OUT/run.log" >&2
  fi
}

# probe ARGS...: true when one message reaches one subscriber (pushbench
# -scenario probe), the health check of a server and transport.
probe() {
  timeout 60 "$BIN/pushbench" -scenario probe -max-time 30s -wait-timeout 5s -label probe "$@" \
    >> "$OUT/probe.log" 2>&1
}
