#!/usr/bin/env bash
# What the app's browser test (tests/test_browser.py) and benchmarks/app_latency.py need:
# Debian's Chromium (driven through Playwright's Python API with executable_path=/usr/bin/chromium;
# `playwright install` is never run: it would download its own browsers).
# Usage: .ci/app-deps.sh [VENV_BIN]   (default: the active venv, else .venv/)
set -euo pipefail
cd "$(dirname "$0")/.."
# the venv's bin directory may be given (the Makefile passes its own): it wins over an activated one
if [ -n "${1:-}" ]; then PATH="$(cd "$1" && pwd):$PATH"; export VIRTUAL_ENV="$(cd "$1/.." && pwd)"
elif [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then . .venv/bin/activate; fi
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium
fi
python -m pip install -q "playwright>=1.40"
python - <<'PY'
from pathlib import Path
import importlib.metadata as md, sys
assert Path("/usr/bin/chromium").is_file(), "chromium missing"
print(f"app test deps ok: playwright {md.version('playwright')}, chromium /usr/bin/chromium, python {sys.version.split()[0]}")
PY
