#!/usr/bin/env bash
# The test command: set up, lint, then the whole test suite (unit tests on tiny models built in the
# tests, integration tests on the default model and ../shared/data, the example notebooks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${FTPE_VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest -q -ra --durations=10 "$@"
