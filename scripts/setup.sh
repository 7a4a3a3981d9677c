#!/usr/bin/env bash
# Sets up everything the gateway (mode "run") or the whole test suite (mode "test") needs on a
# fresh Debian 12 machine with Python 3.11, as root: the virtualenv with pinned Python packages,
# then each area's own setup script (scripts/setup_<area>.sh: Debian packages, model weights...).
# Idempotent: a second run only checks.
set -euo pipefail
mode="${1:-run}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export VENV="${VENV:-$root/.venv}"
source "$root/scripts/lib.sh"

python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$python" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; "$python" -m venv "$VENV"; }
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# llama-cpp-python is built from source: only the library, on every core.
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_CURL=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
extras="engine"
[ "$mode" = "test" ] && extras="engine,test"
"$VENV/bin/python" -m pip install -q -e ".[$extras]"

case "$mode" in
  run)  areas="codec engine" ;;
  test) areas="codec engine net turn browser cluster" ;;
  *) echo "usage: $0 run|test" >&2; exit 2 ;;
esac
areas="native $areas"  # the native media path (MEDIA_PATH=native) is built in both modes
for area in $areas; do
  script="$root/scripts/setup_$area.sh"
  if [ -f "$script" ]; then
    echo "== setup: $area"
    bash "$script"
  fi
done
