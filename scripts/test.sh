#!/usr/bin/env bash
# Sets up, installs headless Chromium for the report's browser test, then runs every test.
# Pass pytest options through, e.g.  scripts/test.sh -m "not postgres"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the browser tests will be skipped"
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python -m pytest -q "$@"
