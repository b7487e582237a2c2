#!/usr/bin/env bash
# Set up, lint (ruff, mypy, import-linter), and run every test tier (unit, parity, golden values, real-model
# smoke, the container), build the docs site and run the notebook. Extra arguments go to pytest,
# e.g. `scripts/test.sh -m "not real_model and not container"` for the fast tiers only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# real components, from Debian's packages: headless Chromium for the web pages (driven by Playwright, no
# browser download), PostgreSQL for the prediction store (the tests start a throw-away server), and Docker's
# daemon with debootstrap for the container tier (the tests start their own daemon and make their own base image)
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/mypy                 # basic mode, settings in pyproject.toml
.venv/bin/lint-imports         # the layer contract: lower layers never import higher ones
# the documentation site, strictly (a broken link or a docstring mkdocstrings cannot read fails), built aside
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
# pytest exits 5 when it collected nothing; set -e turns that (and any failure) into a failed run
.venv/bin/pytest "$@"
