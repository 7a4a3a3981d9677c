#!/usr/bin/env bash
# The native media path (MEDIA_PATH=native): gateway/media/native/_pump.c, a CPython extension over
# Debian's libsrtp2, built in place next to its source with the venv's Python headers.
# Idempotent (rebuilds only when the source is newer); runs standalone or from scripts/setup.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${VENV:-$root/.venv}/bin/python"
apt_install gcc libc6-dev libsrtp2-dev pkg-config
dir="$root/gateway/media/native"
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
if [ ! -f "$include/Python.h" ]; then  # a Debian interpreter keeps its headers in python3-dev
  apt_install python3-dev
fi
out="$dir/_pump$suffix"
if [ ! -f "$out" ] || [ "$dir/_pump.c" -nt "$out" ]; then
  gcc -O2 -g0 -fPIC -shared -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
    -I"$include" $(pkg-config --cflags libsrtp2) "$dir/_pump.c" -o "$out.tmp" $(pkg-config --libs libsrtp2)
  mv "$out.tmp" "$out"
  echo "built $out"
fi
"$python" -c 'import gateway.media.native._pump' && echo "native media path: ok"
