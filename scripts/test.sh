#!/usr/bin/env bash
# Set up, lint (ruff, mypy, import-linter), and run every test tier (unit, parity, golden values, real-model
# smoke). Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not real_model"` for the fast tiers only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the web page is tested end to end in Debian's headless Chromium (driven by Playwright, no browser download)
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/mypy                 # basic mode, settings in pyproject.toml
.venv/bin/lint-imports         # the layer contract: lower layers never import higher ones
# pytest exits 5 when it collected nothing; set -e turns that (and any failure) into a failed run
.venv/bin/pytest "$@"
