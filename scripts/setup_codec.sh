#!/usr/bin/env bash
# libopus for the gateway's own codec path (FEC decoding, concealment, mono voice encoder):
# gateway/media/opus.py binds Debian's libopus0 with ctypes. Without it the copy bundled in PyAV's
# wheel is used (with a warning), but the system library gets security updates.
# Idempotent; runs standalone or from scripts/setup.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install libopus0
