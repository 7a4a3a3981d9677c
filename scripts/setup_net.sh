#!/usr/bin/env bash
# Lossy-network test bed (tests/netbed): network namespaces (iproute2), drops (nftables), and TUN
# devices for the delay relay. Idempotent; runs as root, alone or from scripts/setup.sh. It only
# checks kernel support and says what is missing: the netns tests skip with that reason anyway.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "setup_net: not root: the netns tests will be skipped" >&2
  exit 0
fi
# `ip` and `nft` may come from elsewhere (a distroless CI image): only install what no PATH has.
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)
command -v sysctl >/dev/null || need+=(procps)
[ "${#need[@]}" -eq 0 ] || apt_install "${need[@]}"

if [ ! -e /dev/net/tun ]; then
  modprobe tun 2>/dev/null || true
  if [ ! -e /dev/net/tun ]; then
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200 2>/dev/null || true
    chmod 600 /dev/net/tun 2>/dev/null || true
  fi
fi

problems=()
python3 - <<'PY' 2>/dev/null || problems+=("/dev/net/tun cannot be opened (no tun module, or a container without the device)")
import os
os.close(os.open("/dev/net/tun", os.O_RDWR))
PY
probe="nbed-setupprobe"
ip netns del "$probe" 2>/dev/null || true
if ip netns add "$probe" 2>/dev/null; then
  ip netns exec "$probe" nft add table inet netbed_probe 2>/dev/null \
    || problems+=("nftables does not work in a network namespace (kernel without nf_tables?)")
  ip netns del "$probe"
else
  problems+=("network namespaces cannot be created (needs CAP_SYS_ADMIN)")
fi
if [ "${#problems[@]}" -gt 0 ]; then
  printf 'setup_net: the netns tests will be skipped: %s\n' "${problems[@]}" >&2
else
  echo "setup_net: namespaces, nftables and TUN work"
fi
