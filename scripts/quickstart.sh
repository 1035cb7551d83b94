#!/usr/bin/env bash
# The main job: set up, then execute examples/01_quickstart.ipynb headless on the default model and
# write the executed notebook and an HTML export to artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${FTPE_VENV:-.venv}
mkdir -p artifacts
"$VENV/bin/jupyter" nbconvert --to notebook --execute examples/01_quickstart.ipynb \
  --ExecutePreprocessor.timeout=1800 --output-dir artifacts --output 01_quickstart.executed.ipynb
# Rank each view's static HTML above its widget: the export is read offline, where a widget's
# JavaScript (fetched from a CDN) cannot load.
"$VENV/bin/jupyter" nbconvert --to html artifacts/01_quickstart.executed.ipynb --output-dir artifacts \
  --NbConvertBase.display_data_priority='["text/html", "application/vnd.jupyter.widget-view+json", "application/javascript", "text/markdown", "image/svg+xml", "text/latex", "image/png", "image/jpeg", "text/plain"]'
echo "quickstart: wrote artifacts/01_quickstart.executed.ipynb and artifacts/01_quickstart.executed.html"
