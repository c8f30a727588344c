#!/usr/bin/env bash
# The README's first command: install judgelab and run the quickstart experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
judgelab validate examples/quickstart.yaml
if judgelab run --help >/dev/null 2>&1; then
  judgelab run examples/quickstart.yaml
else
  echo "judgelab run (the local runtime) is not built yet; the experiment is valid and the"
  echo "built-in model is cached. Try: judgelab models"
fi
