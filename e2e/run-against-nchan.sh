#!/usr/bin/env bash
# Runs the browser e2e suite against a private nginx + nchan 1.3.6, to show that the
# suite tests nchan's own wire behaviour.
#   e2e/run-against-nchan.sh [node --test args, e.g. --test-name-pattern=eventsource]
# Environment: E2E_NCHAN_PORT (default 19101), E2E_NCHAN_PREFIX (default /tmp/caddy-push-e2e-nchan).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PORT=${E2E_NCHAN_PORT:-19101}
PREFIX=${E2E_NCHAN_PREFIX:-/tmp/caddy-push-e2e-nchan}
NGINX=${NGINX:-/usr/sbin/nginx}

"$HERE/setup.sh"

if [ ! -f /usr/lib/nginx/modules/ngx_nchan_module.so ]; then
  echo "run-against-nchan: nchan module missing (apt-get install nginx-light libnginx-mod-nchan)" >&2
  exit 1
fi

rm -rf "$PREFIX"
mkdir -p "$PREFIX/logs" "$PREFIX/tmp"
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@E2E_DIR@|$HERE|g" -e "s|@PORT@|$PORT|g" \
  "$HERE/nchan.conf" > "$PREFIX/nginx.conf"

NGINX_PID=""
stop_nginx() {
  if [ -n "$NGINX_PID" ] && kill -0 "$NGINX_PID" 2>/dev/null; then
    echo "run-against-nchan: stopping nginx (pid $NGINX_PID)"
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$NGINX_PID" 2>/dev/null; then kill -TERM "$NGINX_PID" 2>/dev/null || true; fi
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  NGINX_PID=""
}
trap stop_nginx EXIT
trap 'exit 130' INT TERM

"$NGINX" -t -q -p "$PREFIX" -c "$PREFIX/nginx.conf"
"$NGINX" -p "$PREFIX" -c "$PREFIX/nginx.conf" &
NGINX_PID=$!
echo "run-against-nchan: nginx pid $NGINX_PID on 127.0.0.1:$PORT (prefix $PREFIX)"

BASE="http://127.0.0.1:$PORT"
ready=0
for _ in $(seq 1 100); do
  if ! kill -0 "$NGINX_PID" 2>/dev/null; then break; fi
  if curl -fsS -o /dev/null --max-time 1 "$BASE/e2e/pages/client.html"; then ready=1; break; fi
  sleep 0.1
done
if [ "$ready" != 1 ]; then
  echo "run-against-nchan: nginx did not come up; error log:" >&2
  tail -n 30 "$PREFIX/logs/error.log" >&2 || true
  exit 1
fi

status=0
(cd "$HERE" && PUSH_BASE="$BASE" PUSH_SERVER=nchan node --test "$@" ./) || status=$?
if [ "$status" != 0 ]; then
  echo "run-against-nchan: suite failed ($status); last lines of $PREFIX/logs/error.log:" >&2
  grep -v '\[info\]' "$PREFIX/logs/error.log" | tail -n 20 >&2 || true
fi
exit "$status"
