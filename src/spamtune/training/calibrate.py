"""After the fit, with the best epoch's weights: the decision rule and the drift reference stored in the run.

- single-label runs: the temperature fitted on validation (decisions.fit_temperature);
- `--stack ngrams` runs: the n-gram model and the stacker (stacking.py), whose logits everything below reads;
- binary runs: the operating point (block and review thresholds) picked on validation and the calibration half of
  the unused ham, for `--target-fpr` / `--target-precision` / `--review-fpr` (decisions.py has the protocol);
- multi-label runs: one threshold per label, the best F1 on validation (tasks.MultiLabel);
- single-label runs: RUN/reference.safetensors, what `spamtune monitor` compares production with (drift.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spamtune.batching import TextDataset
from spamtune.classifier import Classifier, batched_logits
from spamtune.data import SPLIT_FILES, read_split
from spamtune.decisions import fit_temperature, in_calibration_half, pick_operating_point
from spamtune.drift import Reference, message_features, natural_sample
from spamtune.runs import WEIGHTS, load_weights_into
from spamtune.stacking import NgramStack, fit_stack
from spamtune.training.loss import collect_logits
from spamtune.training.setup import TrainSetup
from spamtune.weights import read_safetensors


def load_best_epoch(s: TrainSetup) -> None:
    """Put the saved best epoch (by validation loss) back into the model that trained, in eval mode."""
    load_weights_into(s.module, read_safetensors(s.run_dir / WEIGHTS), "best epoch")
    s.model.eval()


def calibration_ham(s: TrainSetup) -> list[str]:
    """The calibration half of the data directory's unused negatives (label id 0), first `--limit` of them."""
    unused = data_path(s, "unused")
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
    logits_t, y_t = collect_logits(s.val_eval_loader, s.forward)  # in file order (no length buckets)
    logits, y = logits_t.numpy(), y_t.numpy()
    stack = None
    if s.args.stack == "ngrams":
        val_texts = list(read_split(data_path(s, "validation"))["Text"][: s.args.limit])  # the logits' file order
        stack = fit_run_stack(s, val_texts, logits, y)
        logits = stack.combine(logits, val_texts)
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
                if stack is not None:
                    raw = stack.combine(raw, ham)
                p_ham = s.task.scores(raw / np.float32(cal.temperature))[:, 1]
            a = s.args
            s.run_config.operating_point = pick_operating_point(
                p_val[y == 1], p_val[y == 0], p_ham, s.label_set.names[1], a.target_fpr, a.target_precision,
                a.review_fpr)
            write_reference(s, ham, p_val, p_ham, y)
        else:
            write_reference(s, [], None, None, y)
    s.run_config.write(s.run_dir)


def data_path(s: TrainSetup, split: str) -> Path:
    return Path(s.run_config.data_dir or "") / f"{split}.csv"


def fit_run_stack(s: TrainSetup, val_texts: list[str], val_logits: np.ndarray, val_y: np.ndarray) -> NgramStack:
    """--stack ngrams: the n-gram model on the training split, the stacker on validation (the LLM's `val_logits`
    of `val_texts`); saved as RUN/stack.safetensors."""
    train = read_split(data_path(s, "train"))[: s.args.limit]
    stack = fit_stack(list(train["Text"]), train["Label"].to_numpy(), val_texts, val_y, val_logits,
                      s.run_config.normalize, s.args.seed)
    stack.save(s.run_dir)
    print(f"stacked with n-grams: weights LLM {stack.stacker[0]:.3f}, n-grams {stack.stacker[1]:.3f}")
    return stack


SPLITS = [name.removesuffix(".csv") for name in SPLIT_FILES]


def positive_rate(s: TrainSetup) -> float:
    """The share of label id 1 over every prepared split (train, validation, test, unused): the corpus's own."""
    labels = np.concatenate([read_split(p)["Label"].to_numpy() for name in SPLITS
                             if (p := data_path(s, name)).is_file()])
    return float((labels == 1).mean())


def write_reference(s: TrainSetup, ham: list[str], p_val: np.ndarray | None, p_ham: np.ndarray | None,
                    y_val: np.ndarray) -> None:
    """RUN/reference.safetensors (drift.py): held-out messages never trained on (validation, in file order, and the
    calibration ham), sampled at the corpus's class ratio: their calibrated scores, input features and pooled
    hidden states."""
    rate = positive_rate(s)
    validation = read_split(data_path(s, "validation"))
    if s.args.limit:
        validation = validation[: s.args.limit]
    texts_all = [*validation["Text"], *ham]
    y = np.concatenate([y_val, np.zeros(len(ham), dtype=int)])
    binary = p_val is not None and p_ham is not None
    idx = natural_sample(y, rate, seed=s.args.seed) if binary else np.arange(min(len(y), 600))
    idx = np.random.default_rng(s.args.seed).permutation(idx)  # any prefix (the embedded 300) is a fair sample
    texts = [texts_all[i] for i in idx]
    scores = np.concatenate([p_val, p_ham])[idx] if binary else np.zeros(0)
    embeddings = None
    if isinstance(s.clf, Classifier):  # the hf backend's models pool inside transformers: no embeddings
        some = texts[:300]
        ds = TextDataset(some, [0] * len(some), s.tokenizer, s.run_config.max_length)
        width = ds.max_length if s.run_config.pooling == "last" else None
        embeddings = batched_logits(s.clf, ds.encoded, ds.pad_id, 32, width, progress=True,
                                    desc="drift reference", method="embed")
    Reference(scores, np.ones(len(scores)), message_features(texts, s.tokenizer), embeddings, rate).save(s.run_dir)
