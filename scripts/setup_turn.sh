#!/usr/bin/env bash
# coturn for the TURN tests (each test starts its own turnserver on loopback with free ports, see
# tests/turn_server.py) and for turn/run-local.sh; unshare/ip (util-linux, iproute2) for the
# test that runs the production config in a network namespace of its own.
# The Debian service stays off, so nothing listens on 3478 by itself. Idempotent; run as root.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install coturn openssl iproute2 util-linux

# Debian enables coturn.service; with systemd running it would start on 3478 at boot.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  if systemctl is-enabled --quiet coturn 2>/dev/null || systemctl is-active --quiet coturn 2>/dev/null; then
    systemctl disable --now coturn
  fi
elif [ -x /etc/init.d/coturn ] && /etc/init.d/coturn status >/dev/null 2>&1; then
  /etc/init.d/coturn stop  # sysvinit: it only runs with TURNSERVER_ENABLED=1 in /etc/default/coturn
fi
command -v turnserver >/dev/null || { echo "setup_turn: turnserver missing after install" >&2; exit 1; }
