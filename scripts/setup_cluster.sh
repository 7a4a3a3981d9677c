#!/usr/bin/env bash
# nginx and redis-server for the scale-out tests (tests/cluster: each test starts its own nginx
# and redis-server with a config of its own on free ports) and for scripts/cluster.
# Debian's services stay off, so nothing listens on 80 or 6379 by itself. Idempotent; run as root.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

apt_install nginx redis-server iproute2

# Debian enables and starts both services on install; with systemd they would come back at boot.
for service in nginx redis-server; do
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    if systemctl is-enabled --quiet "$service" 2>/dev/null || systemctl is-active --quiet "$service" 2>/dev/null; then
      systemctl disable --now "$service"
    fi
  elif [ -x "/etc/init.d/$service" ] && "/etc/init.d/$service" status >/dev/null 2>&1; then
    "/etc/init.d/$service" stop
  fi
done
command -v nginx >/dev/null || { echo "setup_cluster: nginx missing after install" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "setup_cluster: redis-server missing after install" >&2; exit 1; }
