#!/usr/bin/env bash
# lm-evaluation-harness in its own virtual environment (its pins must not move this project's), with the same
# CPU build of torch: bench_scoring.py --peer-python "$PEER_VENV/bin/python" runs it on the same prompts.
set -euo pipefail
PEER_VENV=${PEER_VENV:-.peer-venv}
[ -x "$PEER_VENV/bin/python" ] || python3 -m venv "$PEER_VENV"
"$PEER_VENV/bin/python" -m pip install -q --upgrade pip
"$PEER_VENV/bin/python" -m pip install -q "torch==${FTPE_TORCH_VERSION:-2.13.0}"
"$PEER_VENV/bin/python" -m pip install -q "lm-eval[hf]==${LM_EVAL_VERSION:-0.4.13}"
echo "peer: $("$PEER_VENV/bin/python" -c 'from importlib.metadata import version as v; print("lm-eval", v("lm-eval"), "transformers", v("transformers"))')"
