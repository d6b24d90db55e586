#!/usr/bin/env bash
# Sets up, installs headless Chromium for the browser tests, then runs every test.
# Pass pytest options through, e.g.  scripts/test.sh -m "not postgres"
#   scripts/test.sh --latest    # the fast suite on the newest versions pyproject.toml allows (.venv-latest);
#                               # a scheduled check, not CI: it tells when the pins in constraints.txt can move
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  shift
  bash scripts/setup.sh --latest
  . .venv-latest/bin/activate
  export HF_HUB_OFFLINE=1
  exec python -m pytest -q -m "not slow" "$@"
fi
bash scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the browser tests will be skipped"
fi
. .venv/bin/activate
export HF_HUB_OFFLINE=1
python -m pytest -q "$@"
