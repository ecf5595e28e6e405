# Sourced by the bench scripts after `set -euo pipefail`:
#   . "$(dirname "$0")/lib.sh"; bench_setup DEFAULT-WORK [RESULTS-PREFIX]
# HERE is bench/, ROOT the repository, PEER shared/peer (PEER=dir overrides).
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
PEER=${PEER:-$ROOT/../shared/peer}

# bench_setup sets WORK (the WORK variable, else $1) and, given a prefix,
# OUT: a fresh results folder under WORK named by the prefix and the UTC
# time. It raises the open-files limit as far as allowed (thousands of
# long-polls each hold a descriptor).
bench_setup() {
  WORK=${WORK:-$1}
  OUT=$WORK
  if [ -n "${2:-}" ]; then OUT=$WORK/$2-$(date -u +%Y%m%dT%H%M%SZ); fi
  mkdir -p "$OUT"
  ulimit -n "$(ulimit -Hn)" || true
}
