#!/usr/bin/env bash
# The test command: set up, lint, then the whole test suite (unit tests on tiny models built in the
# tests, integration tests on the default model and ../shared/data, the example notebooks executed
# headless, and the executed quickstart rendered in JupyterLab in headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${FTPE_VENV:-.venv}
# The browser test opens a notebook in Debian's Chromium (Playwright's own browser download does not
# work offline); install it when missing.
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
fi
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest -q -ra --durations=10 "$@"
