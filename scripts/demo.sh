#!/usr/bin/env bash
# Sets up, then runs the demo task on the bundled defaults (CPU, no GPU, no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
task="${1:-examples/manual-qa/task.yaml}"
advise run "$task"
