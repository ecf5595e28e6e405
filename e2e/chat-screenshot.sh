#!/usr/bin/env bash
# Regenerates docs/chat.png, the screenshot of two people chatting (a desktop window and a
# phone, side by side), by running the chat's browser suite against a Caddy on
# example.Caddyfile (TestChatBrowser, about a minute) with CHAT_SCREENSHOT set.
#   e2e/chat-screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."
e2e/setup.sh >/dev/null
CHAT_SCREENSHOT="$PWD/docs/chat.png" CADDY_PUSH_REQUIRE_BROWSER=1 \
  go test -count=1 -run '^TestChatBrowser$' .
echo "wrote docs/chat.png"
