#!/usr/bin/env bash
# Prepares the browser end-to-end suite: Debian's chromium and the npm packages.
# Idempotent; does nothing (quickly) when everything is already there.
#   e2e/setup.sh
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  echo "setup: chromium present ($CHROMIUM)"
else
  echo "setup: $CHROMIUM missing; installing Debian's chromium"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
fi

# npm ci when node_modules is missing or older than the lock file
if [ ! -d "$HERE/node_modules" ] || [ "$HERE/package-lock.json" -nt "$HERE/node_modules" ]; then
  echo "setup: running npm ci in $HERE"
  (cd "$HERE" && npm ci --no-audit --no-fund)
  touch "$HERE/node_modules"   # npm ci does not always bump the directory's mtime
else
  echo "setup: $HERE/node_modules is up to date with package-lock.json"
fi
