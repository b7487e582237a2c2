#!/usr/bin/env bash
# Set up, lint, and run every test tier (unit, parity, real-model smoke). Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not real_model"` for the fast tiers only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
# pytest exits 5 when it collected nothing; set -e turns that (and any failure) into a failed run
.venv/bin/pytest "$@"
