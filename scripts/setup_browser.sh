#!/usr/bin/env bash
# Browser tests: Debian's Chromium (driven by Playwright through executable_path; nothing is
# downloaded) and axe-core from npm for the accessibility audit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
root="$(cd "$(dirname "$0")/.." && pwd)"
apt_install chromium
command -v npm >/dev/null || apt_install nodejs npm
if [ ! -f "$root/tests/browser/node_modules/axe-core/axe.min.js" ]; then
  (cd "$root/tests/browser" && npm ci --no-audit --no-fund --loglevel=error)
fi
