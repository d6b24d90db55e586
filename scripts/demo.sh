#!/usr/bin/env bash
# Sets up, then runs the demo task on the bundled defaults (CPU, no GPU, no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
task="${1:-examples/manual-qa/task.yaml}"
# The demo stops at the verdict: on a CPU the study after a fine-tune win takes longer than the
# measurement itself. `advise tune <task.yaml>` continues from here with what won.
advise run "$task" --no-tune
