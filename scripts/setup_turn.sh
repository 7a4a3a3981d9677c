#!/usr/bin/env bash
# coturn for the TURN tests (each test starts its own turnserver on loopback, see
# tests/turn_server.py). The Debian service stays off: nothing listens on 3478 by itself.
set -euo pipefail
apt_install coturn
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl disable --now coturn
fi
