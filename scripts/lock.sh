#!/usr/bin/env bash
# Writes constraints.txt: the exact versions in .venv, which scripts/setup.sh installs against so a
# fresh machine gets what CI tested. Run it after `scripts/test.sh --latest` passed, to move the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
{
  echo "# The versions the test suite passed with (scripts/lock.sh wrote this from $venv)."
  echo "# scripts/setup.sh installs with -c constraints.txt; pyproject.toml keeps ranges for library users."
  "$venv/bin/pip" freeze --disable-pip-version-check 2>/dev/null \
    | grep -v -E '^(-e |advise[= ]|#)' | grep -v ' @ file:' \
    | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'
} > constraints.txt
echo "wrote constraints.txt ($(grep -vc '^#' constraints.txt) packages)"
