#!/usr/bin/env bash
# The README's first command: install judgelab and run the quickstart study end to end
# (Annotate -> TrainJudges -> TrainPolicy per arm -> Evaluate -> report) on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
judgelab validate examples/quickstart.yaml
judgelab run examples/quickstart.yaml
echo "report: runs/quickstart/report.md (and report.html, results.json)"
