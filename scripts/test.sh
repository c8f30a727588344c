#!/usr/bin/env bash
# The test command (README): lint, types, import rules, then every test tier that runs here.
# Fails when pytest collects no test (pytest's exit code 5).
set -uo pipefail
cd "$(dirname "$0")/.."
[ -d .venv ] && . .venv/bin/activate
python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then echo "no tests ran: failing" >&2; exit 1; fi
exit "$rc"
