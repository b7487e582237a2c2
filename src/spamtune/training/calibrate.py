"""After the fit, with the best epoch's weights: the decision rule and the drift reference stored in the run.

- single-label runs: the temperature fitted on validation (decisions.fit_temperature);
- `--stack ngrams` runs: the n-gram model and the stacker (stacking.py), whose logits everything below reads;
- binary runs: the operating point (block and review thresholds) picked on validation and the calibration half of
  the unused ham, for `--target-fpr` / `--target-precision` / `--review-fpr` (decisions.py has the protocol);
- multi-label runs: one threshold per label, the best F1 on validation (tasks.MultiLabel);
- `--cascade ngrams` runs: the cascade's n-gram model (RUN/cascade.safetensors) and its bands (stacking.py);
- binary runs of ours (scratch backend): the memory of corrections' similarity threshold and its guard's vectors
  (RUN/memory.safetensors; decisions.py has the protocol);
- single-label runs: RUN/reference.safetensors, what `spamtune monitor` compares production with (drift.py);
- fp32 runs: the model's logits of what was scored here (and of the training split, from its cached prefix) in
  the run's memo (runs.LogitsMemo), so that `spamtune evaluate` does not score them again.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np

from spamtune.batching import TextDataset, encode_for_model
from spamtune.calibration.decisions import (
    MemoryCalibration,
    fit_temperature,
    in_calibration_half,
    near_duplicate_level,
    pick_memory_threshold,
    pick_operating_point,
    unit_rows,
)
from spamtune.calibration.drift import Reference, message_features, natural_sample
from spamtune.calibration.stacking import NgramStack, fit_cascade, fit_stack, save_cascade
from spamtune.classifier import Classifier, batched_logits, pad_width
from spamtune.data import SPLIT_FILES, read_split
from spamtune.data.labels import POSITIVE_ID
from spamtune.devices import autocast, resolve_dtype
from spamtune.runs import WEIGHTS, LogitsMemo, load_weights_into, memo_setting
from spamtune.training.loss import collect_logits
from spamtune.training.setup import TrainSetup
from spamtune.weights import read_safetensors


def load_best_epoch(s: TrainSetup) -> None:
    """Put the saved best epoch (by validation loss) back into the model that trained, in eval mode."""
    load_weights_into(s.model.module, read_safetensors(s.run_dir / WEIGHTS), "best epoch")
    s.model.step.eval()


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
    if not (s.data.task.picks_thresholds or s.data.task.name == "single_label"):
        return
    load_best_epoch(s)
    logits_t, y_t = collect_logits(s.data.val_eval_loader, s.model.forward)  # in file order (no length buckets)
    logits, y = logits_t.numpy(), y_t.numpy()
    val_texts = list(split_rows(s, "validation")["Text"])  # the logits' file order
    memo = logits_memo(s)
    if memo is not None:
        memo_add(s, memo, val_texts, logits)
    stack = None
    if s.args.stack == "ngrams":
        stack = fit_run_stack(s, val_texts, logits, y)
        logits = stack.combine(logits, val_texts)
    if s.data.task.picks_thresholds:
        s.run_config.thresholds = s.data.task.pick_thresholds(y, s.data.task.scores(logits))
    else:
        cal = fit_temperature(logits, y)
        s.run_config.calibration = cal
        if len(s.data.label_set) == 2:
            p_val = s.data.task.scores(logits / np.float32(cal.temperature))[:, 1]
            ham = calibration_ham(s)
            p_ham, ham_vectors = np.zeros(0), None
            if ham:
                raw, ham_vectors = score_texts(s, ham, "scoring the calibration ham", pooled=True)
                if memo is not None:
                    memo_add(s, memo, ham, raw)
                if stack is not None:
                    raw = stack.combine(raw, ham)
                p_ham = s.data.task.scores(raw / np.float32(cal.temperature))[:, 1]
            a = s.args
            s.run_config.operating_point = pick_operating_point(
                p_val[y == 1], p_val[y == 0], p_ham, s.data.label_set.names[POSITIVE_ID], a.target_fpr,
                a.target_precision, a.review_fpr)
            if a.cascade == "ngrams":
                fit_run_cascade(s, val_texts, y, ham, stack)
            vectors = None
            if ham_vectors is not None:  # a run of ours: the pooled vectors serve the memory and the reference
                val_vectors = validation_vectors(s, val_texts)
                calibrate_memory(s, val_vectors, ham_vectors,
                                 p_ham >= s.run_config.operating_point.block_threshold, y)
                vectors = np.concatenate([val_vectors, ham_vectors])
            write_reference(s, val_texts, ham, p_val, p_ham, y, vectors)
        else:
            write_reference(s, val_texts, [], None, None, y)
    s.run_config.write(s.run_dir)
    if memo is not None:
        # the training split's frozen prefix is cached, so its logits cost only the trained layers (--augment: the
        # loader also holds perturbed copies, which evaluation never reads)
        if s.model.cached and not s.args.augment:
            train = list(split_rows(s, "train")["Text"])
            memo_add(s, memo, train, collect_logits(s.data.train_eval_loader, s.model.forward)[0].numpy())
        memo.save()


def logits_memo(s: TrainSetup) -> LogitsMemo | None:
    """The run's memo of the model's logits as `spamtune evaluate` will read it (fp32 on this device type), or None
    where evaluation would compute them differently (bf16 here: autocast, not bf16 weights)."""
    if s.args.dtype == "bf16" or resolve_dtype(s.args.dtype, s.device) != "fp32":
        return None
    return LogitsMemo(s.run_dir, memo_setting(s.run_dir, s.run_config, "fp32", None, s.device.type))


def memo_add(s: TrainSetup, memo: LogitsMemo, texts: list[str], logits: np.ndarray) -> None:
    assert len(texts) == len(logits), "the logits are not the texts' (a loader out of file order?)"
    memo.add(texts, logits, encode_for_model(s.model.tokenizer, texts, s.run_config.max_length)[1])


def fit_run_cascade(s: TrainSetup, val_texts: list[str], val_y: np.ndarray, ham: list[str],
                    stack: NgramStack | None) -> None:
    """--cascade ngrams: the n-gram model on the training split (a stacked run's own: the same fit), the bands on
    held-out margins (stacking.py); the model in RUN/cascade.safetensors, the bands in the manifest."""
    train = split_rows(s, "train")
    a = s.args
    model, bands = fit_cascade(list(train["Text"]), train["Label"].to_numpy(), val_texts + ham,
                               np.concatenate([val_y, np.zeros(len(ham), dtype=val_y.dtype)]), s.run_config.normalize,
                               a.cascade_spam_allowed, a.cascade_ham_blocked, a.seed,
                               stack.ngrams if stack is not None else None)
    save_cascade(model, s.run_dir)
    s.run_config.cascade = bands
    print(f"cascade: the n-gram model decides margins below {bands.allow_below:+.3f} (ham) and from "
          f"{bands.block_at:+.3f} (spam): {bands.sure:.0%} of {sum((bands.picked_on or {}).values())} held-out "
          "messages")


def score_texts(s: TrainSetup, texts: list[str], desc: str,
                pooled: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """The model's raw logits for `texts` and, with `pooled` (runs of ours only), the pooled vectors the head read,
    from the same pass."""
    ds = TextDataset(texts, [0] * len(texts), s.model.tokenizer, s.run_config.max_length)
    width = pad_width(s.run_config.pooling, ds.max_length)
    if not (pooled and isinstance(s.model.classifier, Classifier)):
        return batched_logits(s.model.predictor, ds.encoded, ds.pad_id, 32, width, progress=True, desc=desc), None
    out = batched_logits(s.model.classifier, ds.encoded, ds.pad_id, 32, width, progress=True, desc=desc,
                         method="forward_pooled")
    c = len(s.data.label_set)
    return out[:, :c], out[:, c:]


def validation_vectors(s: TrainSetup, val_texts: list[str]) -> np.ndarray:
    """Validation's pooled vectors in file order: from the cached frozen prefix when training read one (only the
    trained layers run, as for its logits), else through the whole model."""
    if not s.model.cached:
        vectors = score_texts(s, val_texts, "validation vectors", pooled=True)[1]
        assert vectors is not None
        return vectors
    classifier = cast(Classifier, s.model.classifier)

    def pooled(b):
        with autocast(s.device, s.args.dtype):
            return classifier.pooled(b.hidden.to(s.device), b.lengths.to(s.device))

    vectors = collect_logits(s.data.val_eval_loader, pooled)[0].numpy()  # file order (no length buckets)
    assert len(vectors) == len(val_texts), "the vectors are not validation's (a loader out of file order?)"
    return vectors


def calibrate_memory(s: TrainSetup, val_vectors: np.ndarray, ham_vectors: np.ndarray, ham_blocked: np.ndarray,
                     y_val: np.ndarray) -> None:
    """RUN/memory.safetensors: the memory of corrections' threshold, picked with the validation positives as the
    remembered spam and the calibration ham (decisions.py), and the (pooled) vectors of both for its guard."""
    vectors = unit_rows(val_vectors)
    near = near_duplicate_level(ham_vectors)
    threshold, added = pick_memory_threshold(vectors[y_val == 1], ham_vectors, ham_blocked, at_least=near)
    guard = np.concatenate([vectors, unit_rows(ham_vectors)])  # every held-out message with a known label
    labels = np.concatenate([y_val, np.zeros(len(ham_vectors), dtype=y_val.dtype)])
    MemoryCalibration(threshold, added, {"entries": int((y_val == 1).sum()), "calibration_ham": len(ham_vectors)},
                      near, guard, labels).save(s.run_dir)
    print(f"memory of corrections: cosine similarity >= {threshold:.4f} decides (near-duplicate level {near:.4f}; "
          f"adds {added:.2%} FPR on the calibration ham)")


def split_rows(s: TrainSetup, split: str):
    """The rows of a split the run trained with (its first `--limit`), in file order."""
    return read_split(data_path(s, split))[: s.args.limit]


def data_path(s: TrainSetup, split: str) -> Path:
    return Path(s.run_config.data_dir or "") / f"{split}.csv"


def fit_run_stack(s: TrainSetup, val_texts: list[str], val_logits: np.ndarray, val_y: np.ndarray) -> NgramStack:
    """--stack ngrams: the n-gram model on the training split, the stacker on validation (the LLM's `val_logits`
    of `val_texts`); saved as RUN/stack.safetensors."""
    train = split_rows(s, "train")
    stack = fit_stack(list(train["Text"]), train["Label"].to_numpy(), val_texts, val_y, val_logits,
                      s.run_config.normalize, s.args.seed)
    stack.save(s.run_dir)
    print(f"stacked with n-grams: weights LLM {stack.stacker[0]:.3f}, n-grams {stack.stacker[1]:.3f}")
    return stack


SPLITS = [name.removesuffix(".csv") for name in SPLIT_FILES]
REFERENCE_EMBEDDINGS = 300  # held-out messages whose pooled states the drift reference keeps


def positive_rate(s: TrainSetup) -> float:
    """The share of label id 1 over every prepared split (train, validation, test, unused): the corpus's own."""
    labels = np.concatenate([read_split(p)["Label"].to_numpy() for name in SPLITS
                             if (p := data_path(s, name)).is_file()])
    return float((labels == 1).mean())


def write_reference(s: TrainSetup, val_texts: list[str], ham: list[str], p_val: np.ndarray | None,
                    p_ham: np.ndarray | None, y_val: np.ndarray, vectors: np.ndarray | None = None) -> None:
    """RUN/reference.safetensors (drift.py): held-out messages never trained on (validation, in file order, and the
    calibration ham), sampled at the corpus's class ratio: their calibrated scores, input features and pooled
    hidden states (`vectors`: those of validation + ham, already computed; else computed here)."""
    rate = positive_rate(s)
    texts_all = [*val_texts, *ham]
    y = np.concatenate([y_val, np.zeros(len(ham), dtype=int)])
    binary = p_val is not None and p_ham is not None
    idx = natural_sample(y, rate, seed=s.args.seed) if binary else np.arange(min(len(y), 600))
    idx = np.random.default_rng(s.args.seed).permutation(idx)  # any prefix (the embedded 300) is a fair sample
    texts = [texts_all[i] for i in idx]
    scores = np.concatenate([p_val, p_ham])[idx] if binary else np.zeros(0)
    embeddings = None
    if vectors is not None:
        embeddings = vectors[idx[:REFERENCE_EMBEDDINGS]]
    elif isinstance(s.model.classifier, Classifier):  # the hf backend's models pool inside transformers: no embeddings
        some = texts[:REFERENCE_EMBEDDINGS]
        ds = TextDataset(some, [0] * len(some), s.model.tokenizer, s.run_config.max_length)
        width = pad_width(s.run_config.pooling, ds.max_length)
        embeddings = batched_logits(s.model.classifier, ds.encoded, ds.pad_id, 32, width, progress=True,
                                    desc="drift reference", method="embed")
    features = message_features(texts, s.model.tokenizer)
    Reference(scores, np.ones(len(scores)), features, embeddings, rate).save(s.run_dir)
