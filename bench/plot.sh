#!/usr/bin/env bash
# Writes the SVG charts of pushbench results (bench/plot, a Go module of its
# own with gonum.org/v1/plot): CPU per delivery and latency p99 against the
# number of subscribers (one line per server and transport), idle memory per
# subscriber and the one-subscriber latency as bars.
#
#   bench/plot.sh -out DIR RESULTS.jsonl...
#   bench/plot.sh -out docs/img bench/results/streaming-full-*.jsonl
#
# Relative paths are taken from the current directory.
set -euo pipefail
PLOT=$(cd "$(dirname "$0")/plot" && pwd)
args=()
for a in "$@"; do
  case $a in
    -* | /*) args+=("$a") ;;
    *) args+=("$PWD/$a") ;;
  esac
done
mkdir -p "${TMPDIR:-/tmp}/caddypush-plot"
(cd "$PLOT" && go build -o "${TMPDIR:-/tmp}/caddypush-plot/plot" .)
"${TMPDIR:-/tmp}/caddypush-plot/plot" "${args[@]}"
