#!/usr/bin/env bash
# The README's first command: install judgelab and run the quickstart experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
judgelab validate examples/quickstart.yaml
judgelab generate "In two sentences: what is reward hacking in RL from AI feedback?" \
  --max-new-tokens 64
if judgelab run --help >/dev/null 2>&1; then
  judgelab run examples/quickstart.yaml
else
  echo "judgelab run (the local runtime that executes the whole study) is not built yet:"
  echo "the experiment is valid, the built-in model is cached and answers."
fi
