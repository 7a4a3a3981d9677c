#!/usr/bin/env bash
# The offline engine's system part: espeak-ng (pt-BR phonemes for Kokoro, and the fallback voice).
# Its Python packages (models included) come with `pip install -e .[engine]` in setup.sh; this
# then joins and checks the model files once, so the first call does not wait for it (the
# smaller Qwen2.5 0.5B too, when `.[engine-small]` is installed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
apt_install espeak-ng
HF_HUB_OFFLINE=1 "$VENV/bin/python" - <<'PY'
from gateway.engine.config import EngineConfig
from gateway.engine.models import KOKORO_INT8, LLMS, WHISPER_BASE, default_cache_dir, installed, materialize
default = LLMS[EngineConfig().llm]
for model in (WHISPER_BASE, default, KOKORO_INT8, *(m for m in LLMS.values() if m is not default and installed(m))):
    print("model ready:", materialize(model, default_cache_dir()))
PY
