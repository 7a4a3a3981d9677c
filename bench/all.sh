#!/usr/bin/env bash
# Every benchmark, one after the other, as the README's tables were made (root: network namespaces;
# ~40 minutes on a 2-core machine). Run on a quiet machine; compare rows of one run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${VENV:-$root/.venv}/bin/python"
cd "$root"
run() { echo; echo "\$ python $*"; "$python" -u "$@" 2> >(grep -v "^INFO" >&2); }
run bench/load.py --servers native python echo --calls 10 20 30 40 60 --seconds 20
run bench/load.py --workers 1 --event-loop uvloop --calls 10 20 40 60
run bench/load.py --workers 1 --event-loop asyncio --calls 10 20 40 --idle-calls 0
run bench/load.py --workers 2 --gateway-cores 0,1 --client-cores 0,1 --calls 20 40 --idle-calls 0
run bench/codec_costs.py
run bench/lossy.py
run bench/faults.py
run bench/cluster.py --instances 1 2 3 --calls 6 12 18 --seconds 8 --hop-calls 10
run bench/engine_latency.py --turns 10 --mode both
run bench/engine_eval.py
