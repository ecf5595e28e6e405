#!/usr/bin/env bash
# The instructions redis-server executes per publish script call, counted by
# valgrind's callgrind: a measure of the Redis store's publish.lua that the
# machine's noise does not move (two runs differ by about 1%), for comparing
# changes to the scripts. Three loads, each on a fresh redis-server run under
# callgrind (about 20 s each), the script called by redis-benchmark with the
# arguments the Go side sends (bench.Caddyfile's publisher: buffer 2000,
# message_timeout 1h, a 100-byte body), counted over N calls after N calls of
# warm-up:
#
#   1000 channels, one publication a call ("1000ch")
#   1000 channels, three channels' publications a call (the calls of a
#     batch that go together, pipeline.go) ("1000ch x3")
#   one channel, eight publications a call (coalesced), its buffer (100)
#     full, so every publication drops the oldest message ("1ch x8")
#
#   bench/redis-script-ir.sh [LUA-DIR]     (default: redisstore/lua)
#
# Needs valgrind (Debian: valgrind; installed when missing), redis-server and
# redis-benchmark. Environment: N (2000), PORT (18790).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${1:-$HERE/../redisstore/lua}
N=${N:-2000}
PORT=${PORT:-18790}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
command -v redis-benchmark >/dev/null || { echo "need redis-benchmark (Debian: redis-tools)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/caddypush-script-ir.XXXXXX)
VP=
cleanup() {
  redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
  if [ -n "$VP" ]; then wait "$VP" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
BODY="text/plain

$(printf 'x%.0s' $(seq 1 100))"
# group KEYTAG N-PAYLOADS MAXBUF: one channel's keys (to KEYS) and call
# arguments (to ARGS), in publish.lua's group layout.
KEYS=() ARGS=()
group() {
  local k="bench:{$1}" i
  KEYS+=("$k:m" "$k:q" "$k:d" "$k:e" "$k:x" "$k:w" "$k:z" "$k:s" "$k:i")
  ARGS+=("$2" 1 "$3" 1 0 0 3600000 3600000 "1 $3 1 0 0 3600000 3600000" bench:notes "12 bench" 140 "")
  for i in $(seq 1 "$2"); do ARGS+=("$BODY"); done
}
# compose GROUPS: the publish script as scripts.go composes it: for one
# group scriptPublish (the group inline), for more scriptPublishMany (the
# group as a function, run under pcall by publish_many.lua).
compose() {
  cat "$DIR/prelude.lua"
  if [ "$1" = 1 ]; then
    printf '\nlocal out, seq, b, k = {}, 0, 6, 0\n'
    cat "$DIR/publish.lua"
    printf '\nreturn out\n'
  else
    printf '\nlocal out, seq = {}, 0\nlocal function group(b, k)\n'
    cat "$DIR/publish.lua"
    printf '\nend\n'
    cat "$DIR/publish_many.lua"
  fi
}
# measure NAME PUBLICATIONS-PER-CALL GROUPS RANDOM-RANGE: N calls of the
# script with KEYS and ARGS (__rand_int__ in a key: one of RANDOM-RANGE
# channels).
measure() {
  local name=$1 per=$2 groups=$3 range=$4 sha out ir
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.%p" \
    redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no > "$WORK/valgrind.log" 2>&1 &
  VP=$!
  for _ in $(seq 1 300); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  sha=$(compose "$groups" | redis-cli -p "$PORT" -x script load)
  out=$(redis-cli -p "$PORT" evalsha "$sha" "${#KEYS[@]}" "${KEYS[@]}" 0 1048576 128 3600000 1 60000 "${ARGS[@]}" 2>&1 | head -n 1)
  case $out in ERR* | *error*) echo "$name: the script failed: $out" >&2; exit 1 ;; esac
  run() {
    redis-benchmark -p "$PORT" -q -c 1 -n "$N" -r "$range" evalsha "$sha" "${#KEYS[@]}" "${KEYS[@]}" \
      0 1048576 128 3600000 1 60000 "${ARGS[@]}" > /dev/null
  }
  run
  callgrind_control -i on "$VP" > /dev/null 2>&1
  run
  callgrind_control -i off "$VP" > /dev/null 2>&1
  callgrind_control -d "$VP" > /dev/null 2>&1
  redis-cli -p "$PORT" shutdown nosave > /dev/null 2>&1 || true
  wait "$VP" || true
  VP=
  ir=$(callgrind_annotate "$(ls "$WORK"/cg.*.1)" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n { gsub(",", "", $1); print $1; n = 1 }')
  rm -f "$WORK"/cg.*
  printf '%-10s %9d instructions per call, %9d per publication\n' "$name" $((ir / N)) $((ir / N / per))
}
KEYS=() ARGS=(); group 'c__rand_int__' 1 2000; measure 1000ch 1 1 1000
KEYS=() ARGS=(); for t in c d e; do group "${t}__rand_int__" 1 2000; done; measure "1000ch x3" 3 3 1000
KEYS=() ARGS=(); group one 8 100; measure "1ch x8" 8 1 1
