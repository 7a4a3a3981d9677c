#!/usr/bin/env bash
# Lossy-network tests: network namespaces (iproute2), drops (nftables), delay relay (TUN).
set -euo pipefail
apt_install iproute2 nftables
[ -e /dev/net/tun ] || { mkdir -p /dev/net && mknod /dev/net/tun c 10 200 && chmod 600 /dev/net/tun; }
