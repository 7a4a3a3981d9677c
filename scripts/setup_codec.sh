#!/usr/bin/env bash
# libopus for the gateway's own codec path (FEC decoding, concealment, mono voice encoder).
# gateway/opus.py falls back to the copy inside PyAV's wheel, but the system library is preferred.
set -euo pipefail
apt_install libopus0
