#!/usr/bin/env bash
# libopus for the gateway's own codec path (FEC decoding, concealment, mono voice encoder):
# gateway/opus.py binds Debian's libopus0 with ctypes. Without it the copy bundled in PyAV's
# wheel is used (with a warning), but the system library gets security updates.
# Idempotent; runs standalone or from scripts/setup.sh (which exports apt_install).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if ! declare -F apt_install >/dev/null; then
  apt_install() {
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    if [ "${#missing[@]}" -gt 0 ]; then
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
  }
fi
apt_install libopus0
