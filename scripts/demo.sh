#!/usr/bin/env bash
# The main job on the embedded default model (SmolLM2-135M): set up, prepare the data, fine-tune, evaluate,
# classify two new messages. ~9 min on a 2-core CPU, setup included. Data: $SPAMTUNE_DATA, else the shared
# copy beside this checkout when there is one, else the cache, else a download from UCI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${SPAMTUNE_DATA:-}" ] && [ -f ../shared/data/SMSSpamCollection ]; then
  export SPAMTUNE_DATA=../shared/data/SMSSpamCollection
fi
st=.venv/bin/spamtune
$st prepare --out data --overwrite
$st train --data-dir data --out runs/demo --overwrite
$st evaluate runs/demo --data-dir data
$st classify runs/demo \
  "WINNER!! As a valued network customer you have been selected to receive a £900 prize reward! Call 09061701461" \
  "Are we still on for dinner tonight? I'll bring the wine."
echo "run directory: runs/demo (model.safetensors, run.json, plots: loss.png accuracy.png confusion_matrix.png)"
