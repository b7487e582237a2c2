"""After the fit, with the best epoch's weights: the decision rule stored in the run.

- single-label runs: the temperature fitted on validation (decisions.fit_temperature);
- binary runs: the operating point (block and review thresholds) picked on validation and the calibration half of
  the unused ham, for `--target-fpr` / `--target-precision` / `--review-fpr` (decisions.py has the protocol);
- multi-label runs: one threshold per label, the best F1 on validation (tasks.MultiLabel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spamtune.batching import TextDataset
from spamtune.classifier import batched_logits
from spamtune.data import read_split
from spamtune.decisions import fit_temperature, in_calibration_half, pick_operating_point
from spamtune.runs import WEIGHTS, load_weights_into
from spamtune.training.loss import collect_logits
from spamtune.training.setup import TrainSetup
from spamtune.weights import read_safetensors


def load_best_epoch(s: TrainSetup) -> None:
    """Put the saved best epoch (by validation loss) back into the model that trained, in eval mode."""
    load_weights_into(s.module, read_safetensors(s.run_dir / WEIGHTS), "best epoch")
    s.model.eval()


def calibration_ham(s: TrainSetup) -> list[str]:
    """The calibration half of the data directory's unused negatives (label id 0), first `--limit` of them."""
    unused = Path(s.run_config.data_dir or "") / "unused.csv"
    if not unused.is_file():
        return []
    df = read_split(unused)
    texts = [t for t, y in zip(df["Text"], df["Label"]) if y == 0 and in_calibration_half(t)]
    return texts[: s.args.limit] if s.args.limit else texts


def calibrate(s: TrainSetup) -> None:
    """Fit and store the run's decision rule (see the module docstring); writes the manifest."""
    if not (s.task.picks_thresholds or s.task.name == "single_label"):
        return
    load_best_epoch(s)
    logits_t, y_t = collect_logits(s.val_full_loader, s.forward)
    logits, y = logits_t.numpy(), y_t.numpy()
    if s.task.picks_thresholds:
        s.run_config.thresholds = s.task.pick_thresholds(y, s.task.scores(logits))
    else:
        cal = fit_temperature(logits, y)
        s.run_config.calibration = cal
        if len(s.label_set) == 2:
            p_val = s.task.scores(logits / np.float32(cal.temperature))[:, 1]
            ham = calibration_ham(s)
            p_ham = np.zeros(0)
            if ham:
                ds = TextDataset(ham, [0] * len(ham), s.tokenizer, s.run_config.max_length)
                width = ds.max_length if s.run_config.pooling == "last" else None
                raw = batched_logits(s.predictor, ds.encoded, ds.pad_id, 32, width, progress=True,
                                     desc="scoring the calibration ham")
                p_ham = s.task.scores(raw / np.float32(cal.temperature))[:, 1]
            a = s.args
            s.run_config.operating_point = pick_operating_point(
                p_val[y == 1], p_val[y == 0], p_ham, s.label_set.names[1], a.target_fpr, a.target_precision,
                a.review_fpr)
    s.run_config.write(s.run_dir)
