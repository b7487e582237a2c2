"""Decisions a user can operate: calibrated probabilities (temperature scaling), a stored operating point with
three bands (allow / review / block), and the protocol that picks it on data never used to report it.

Protocol (binary runs; the positive class is label id 1, "spam" for the SMS set):
- The unused ham (`unused.csv`, the majority-class messages undersampling left out) is split deterministically in
  two halves by the first byte of each message's sha256: even -> calibration half, odd -> report half. Identical
  messages (the corpus has duplicates) always land in the same half.
- The temperature is fitted on the validation split (minimum negative log-likelihood).
- The block threshold is the lowest calibrated P(positive) whose false-positive rate on the picking negatives
  (validation ham + the calibration half) is at most `target_fpr` (or, with `target_precision`, the lowest whose
  precision on validation reaches it); the review threshold is the same for the looser `review_fpr`.
- Evaluation reports FPR on the report half only, leaving out the few messages whose twin is in the validation
  split (the corpus repeats some ham), so no reported message was used to pick.

Bands: P(positive) >= block threshold -> "block"; >= review threshold -> "review" (for a person to check);
below -> "allow".

The memory of corrections (inference/memory.py) decides a message like the corrected message it is nearest to, when
their pooled vectors' cosine similarity reaches the run's memory threshold. The threshold is picked with the same
halves, as the higher of two similarities: (1) the near-duplicate level, which only 1 % of the calibration ham
reach to another, distinct calibration ham message (`MEMORY_NEAR_DUPLICATE`): the memory stops copies and variants
of a reported message, as Rspamd's fuzzy hashes do, not whatever shares its topic; (2) the lowest similarity at
which the validation positives, standing in for a memory of reported spam, would block at most `MEMORY_ADDED_FPR`
of the calibration ham the model allows (half the 0.1 points the memory may add; the other half is room for the
report half's noise). The second alone let a "hi mum, new number" correction block a fifth of ordinary family
messages (benchmarks/learning_stream.py): in the head's representation a scam written like ham lies among ham.
Stored beside it, for the guard: the vectors and labels of the validation messages and the calibration ham
(`MemoryCalibration`, RUN/memory.safetensors). A remembered message reaches no further than the nearest guard
message of another label either (inference/memory.py).

The cascade (`train --cascade ngrams`, inference/cascade.py) lets a cheap n-gram model decide the messages it is
sure of, so only the rest reach the LLM. Its two bands are picked on messages the n-gram model never trained on:
out-of-fold margins of the training split (k-fold cross-fitting), the validation split and the calibration half.
Below `allow_below`: ham, where at most `spam_allowed` of those spam lie; at or above `block_at`: spam, where at
most `ham_blocked` of those ham lie (`pick_cascade_bands`). Sure means wrong on that rare a share of held-out
messages; a new style the n-grams never met lands between the bands and goes on to the LLM.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from spamtune.config import CASCADE_HAM_BLOCKED, CASCADE_SPAM_ALLOWED, DEFAULT_REVIEW_FPR, DEFAULT_TARGET_FPR
from spamtune.data.labels import POSITIVE_ID

Band = Literal["allow", "review", "block"]
BANDS: tuple[Band, ...] = ("allow", "review", "block")
MEMORY_ADDED_FPR = 0.0005  # the calibration ham the memory's threshold may add (see the module docstring)
MEMORY_FLOOR = 0.5  # never remember by a looser similarity than this, however far apart the ham lies
MEMORY_NEAR_DUPLICATE = 0.99  # the share of calibration ham with no distinct ham message at the threshold or above
MEMORY_NEAR_DUPLICATE_SAMPLE = 4000  # calibration ham messages compared pairwise for it (16M products at most)


@dataclass
class Calibration:
    """Temperature scaling: probabilities are softmax(logits / temperature). ECE and Brier on validation are kept
    for the record (before: temperature 1)."""

    temperature: float = 1.0
    fitted_on: int = 0  # validation messages
    nll_before: float | None = None
    nll_after: float | None = None


@dataclass
class OperatingPoint:
    """The stored decision rule of a binary run, with what it reached on the data that picked it."""

    block_threshold: float
    review_threshold: float
    positive_label: str
    target_fpr: float | None = None  # what picked the block threshold: a false-positive rate...
    target_precision: float | None = None  # ...or a precision on validation
    review_fpr: float | None = None
    picked_on: dict[str, int] | None = None  # messages: validation_positive, validation_negative, calibration_ham
    fpr: float | None = None  # on the picking negatives, at the block threshold
    recall: float | None = None  # on validation positives, at the block threshold


@dataclass
class CascadeBands:
    """Where the cascade's n-gram model decides alone (n-gram SVM margins; see the module docstring)."""

    allow_below: float  # margin below it: ham, the LLM never sees the message
    block_at: float  # margin at or above it: spam
    spam_allowed: float  # the held-out spam share the allow band may hold...
    ham_blocked: float  # ...and the held-out ham share the block band
    picked_on: dict[str, int] | None = None  # held-out messages: spam, ham
    sure: float | None = None  # the share of those held-out messages in either band


def pick_cascade_bands(spam: np.ndarray, ham: np.ndarray, spam_allowed: float = CASCADE_SPAM_ALLOWED,
                       ham_blocked: float = CASCADE_HAM_BLOCKED) -> CascadeBands:
    """The bands from held-out n-gram margins of spam and ham: the widest within the budgets (the k-th lowest spam
    margin with k = floor(spam_allowed * len(spam)) spam below it; likewise from the top for ham), never crossing."""
    if not len(spam) or not len(ham):
        raise ValueError("the cascade's bands need held-out spam and ham")
    spam, ham = np.sort(np.asarray(spam, dtype=np.float64)), np.sort(np.asarray(ham, dtype=np.float64))
    allow_below = float(spam[int(math.floor(spam_allowed * len(spam) + 1e-9))])  # that many spam lie below it
    above = int(math.floor(ham_blocked * len(ham) + 1e-9))  # ham allowed at or above block_at
    block_at = float(np.nextafter(ham[len(ham) - 1 - above], np.inf))
    allow_below = min(allow_below, block_at)
    held = np.concatenate([spam, ham])
    sure = float(((held < allow_below) | (held >= block_at)).mean())
    return CascadeBands(allow_below, block_at, spam_allowed, ham_blocked, {"spam": len(spam), "ham": len(ham)}, sure)


# ---------------------------------------------------------------------------------------------------------------
# Calibration


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true classes."""
    p = softmax(logits, temperature)[np.arange(len(y)), y]
    return float(-np.log(np.clip(p, 1e-300, None)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> Calibration:
    """The temperature with the least NLL on (validation) logits (Guo et al. 2017), searched on log T in
    [1/20, 20] with scipy's bounded scalar minimizer."""
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, dtype=int)
    res = minimize_scalar(lambda log_t: nll(logits, y, math.exp(log_t)), bounds=(-math.log(20), math.log(20)),
                          method="bounded", options={"xatol": 1e-4})
    t = float(math.exp(res.x))
    return Calibration(temperature=t, fitted_on=len(y), nll_before=nll(logits, y), nll_after=nll(logits, y, t))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    correct = (pred == y).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    return float(sum(abs(correct[idx == b].mean() - conf[idx == b].mean()) * (idx == b).mean()
                     for b in range(bins) if (idx == b).any()))


def brier_score(probs: np.ndarray, y: np.ndarray) -> float:
    """Binary: mean (P(positive) - y)^2 (scikit-learn's brier_score_loss); more classes: mean squared distance to
    the one-hot target."""
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - y) ** 2))
    onehot = np.eye(probs.shape[1])[y]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


# ---------------------------------------------------------------------------------------------------------------
# The unused-ham halves and the thresholds


def in_calibration_half(text: str) -> bool:
    """True for the calibration half of the unused ham, False for the report half (see the module docstring)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[0] % 2 == 0


def split_halves(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (calibration half, report half) over `texts`."""
    calib = np.array([in_calibration_half(t) for t in texts], dtype=bool)
    return calib, ~calib


def binary_rates(y: np.ndarray, blocked: np.ndarray, counts: np.ndarray | None = None) -> dict[str, Any]:
    """What decisions give on labels `y` (POSITIVE_ID is the positive class) when `blocked` marks the messages
    decided positive: accuracy, recall (over the positives), FPR (over the negatives), precision (over the
    blocked) and the confusion matrix [[tn, fp], [fn, tp]]; a rate over an empty set is None. `counts`: how many
    messages each row stands for (tallies), 1 each by default. The one place these are computed from decisions."""
    positive, blocked = np.asarray(y) == POSITIVE_ID, np.asarray(blocked, dtype=bool)
    k = np.ones(len(positive), dtype=np.int64) if counts is None else np.asarray(counts, dtype=np.int64)
    tp, fp = int(k[blocked & positive].sum()), int(k[blocked & ~positive].sum())
    fn, tn = int(k[~blocked & positive].sum()), int(k[~blocked & ~positive].sum())
    return {"accuracy": (tp + tn) / (tp + fp + fn + tn) if tp + fp + fn + tn else None,
            "recall": tp / (tp + fn) if tp + fn else None, "fpr": fp / (fp + tn) if fp + tn else None,
            "precision": tp / (tp + fp) if tp + fp else None, "confusion_matrix": [[tn, fp], [fn, tp]]}


def threshold_for_fpr(negatives: np.ndarray, target: float) -> float:
    """The lowest threshold t with mean(negatives >= t) <= target: just above the (k+1)-th highest negative score,
    k = floor(target * n) false positives allowed (fewer on ties)."""
    if len(negatives) == 0:
        raise ValueError("no negative messages to pick a threshold on")
    k = int(math.floor(target * len(negatives) + 1e-9))
    ranked = np.sort(negatives)[::-1]
    if k >= len(ranked):
        return 0.0
    return float(np.nextafter(ranked[k], np.inf))


def threshold_for_precision(positive: np.ndarray, negative: np.ndarray, target: float) -> float:
    """The lowest threshold whose precision (positives among everything >= t) reaches `target`; 1.0 (block
    nothing) if none does."""
    scores = np.concatenate([positive, negative])
    is_pos = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_pos[order])
    precision = tp / np.arange(1, len(order) + 1)
    s = scores[order]
    for i in range(len(order) - 1, -1, -1):  # lowest cut first: the most recall
        if (i == len(order) - 1 or s[i] != s[i + 1]) and precision[i] >= target:
            return float(s[i])
    return 1.0


def pick_operating_point(val_pos: np.ndarray, val_neg: np.ndarray, calib_neg: np.ndarray, positive_label: str,
                         target_fpr: float | None = DEFAULT_TARGET_FPR, target_precision: float | None = None,
                         review_fpr: float = DEFAULT_REVIEW_FPR) -> OperatingPoint:
    """Block and review thresholds on calibrated P(positive): see the module docstring for the protocol."""
    negatives = np.concatenate([val_neg, calib_neg])
    if target_precision is not None:
        block = threshold_for_precision(val_pos, val_neg, target_precision)
    else:
        block = threshold_for_fpr(negatives, DEFAULT_TARGET_FPR if target_fpr is None else target_fpr)
    review = min(threshold_for_fpr(negatives, review_fpr), block)
    return OperatingPoint(
        block_threshold=block, review_threshold=review, positive_label=positive_label,
        target_fpr=None if target_precision is not None else target_fpr, target_precision=target_precision,
        review_fpr=review_fpr,
        picked_on={"validation_positive": len(val_pos), "validation_negative": len(val_neg),
                   "calibration_ham": len(calib_neg)},
        fpr=float((negatives >= block).mean()), recall=float((val_pos >= block).mean()) if len(val_pos) else None)


def bands(p_positive: np.ndarray, block_threshold: float, review_threshold: float) -> list[Band]:
    """allow / review / block per message from P(positive)."""
    return [BANDS[int(p >= block_threshold) + int(p >= review_threshold)] for p in p_positive]


def check_thresholds(threshold: float | None, review_threshold: float | None) -> None:
    """Thresholds given by a user: in [0, 1], review at most block."""
    from spamtune.errors import ConfigError

    for name, v in (("threshold", threshold), ("review threshold", review_threshold)):
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0):
            raise ConfigError(f"the {name} must be a number between 0 and 1")
    if threshold is not None and review_threshold is not None and review_threshold > threshold:
        raise ConfigError("the review threshold must not be above the block threshold")


# ---------------------------------------------------------------------------------------------------------------
# The memory of corrections


def unit_rows(v: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32; a zero row stays zero): cosine similarity is then a dot product."""
    v = np.asarray(v, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1).astype(np.float32)


@dataclass
class MemoryCalibration:
    """A binary run's similarity threshold for the memory of corrections and the guard's validation vectors (see
    the module docstring); RUN/memory.safetensors."""

    threshold: float  # cosine similarity at or above which the nearest remembered message decides
    added_fpr: float  # calibration-half ham the validation positives would have blocked at it
    picked_on: dict[str, int]  # messages: entries (validation positives), calibration_ham
    near_duplicate: float  # the near-duplicate level among the calibration ham (one of the two the threshold is)
    guard_vectors: np.ndarray  # (N, D) unit rows: validation messages and the calibration ham, never trained on
    guard_labels: np.ndarray  # (N,) their label ids

    FILE = "memory.safetensors"

    def save(self, run_dir: str | Path) -> None:
        from safetensors.numpy import save

        from spamtune.fsutil import atomic_file

        data = save({"guard_vectors": np.ascontiguousarray(self.guard_vectors, dtype=np.float32),
                     "guard_labels": np.ascontiguousarray(self.guard_labels, dtype=np.int64)},
                    metadata={"threshold": repr(self.threshold), "added_fpr": repr(self.added_fpr),
                              "picked_on": json.dumps(self.picked_on), "near_duplicate": repr(self.near_duplicate)})
        with atomic_file(Path(run_dir) / self.FILE, "wb") as f:
            f.write(data)

    @classmethod
    def load(cls, run_dir: str | Path) -> MemoryCalibration | None:
        """The run's memory calibration; None for runs without one (trained before it, or not binary runs of
        ours)."""
        from safetensors import safe_open

        path = Path(run_dir) / cls.FILE
        if not path.is_file():
            return None
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            vectors, labels = f.get_tensor("guard_vectors"), f.get_tensor("guard_labels")
        return cls(float(meta["threshold"]), float(meta["added_fpr"]), json.loads(meta["picked_on"]),
                   float(meta["near_duplicate"]), vectors, labels)


def near_duplicate_level(ham: np.ndarray, share: float = MEMORY_NEAR_DUPLICATE,
                         sample: int = MEMORY_NEAR_DUPLICATE_SAMPLE) -> float:
    """The cosine similarity that only `1 - share` of the `ham` vectors reach to another, distinct one (a message
    repeated word for word, similarity ~1, is not its own neighbour); over an evenly spaced `sample` of them."""
    v = unit_rows(ham[np.linspace(0, len(ham) - 1, min(sample, len(ham))).astype(int)] if len(ham) else ham)
    if len(v) < 2:
        return MEMORY_FLOOR
    sims = v @ v.T
    sims[sims > 1 - 1e-4] = -1.0  # itself, and its verbatim repeats
    return float(np.quantile(sims.max(axis=1), share))


def pick_memory_threshold(entries: np.ndarray, ham: np.ndarray, ham_blocked: np.ndarray,
                          budget: float = MEMORY_ADDED_FPR, at_least: float = MEMORY_FLOOR) -> tuple[float, float]:
    """(threshold, added FPR): the lowest cosine similarity, at least `at_least` (the near-duplicate level) and
    `MEMORY_FLOOR`, at which `entries` (vectors of positives standing in for remembered spam) would block at most
    `budget` of the `ham` (vectors) the model does not block already (`ham_blocked`)."""
    if not len(ham):
        raise ValueError("no ham to pick the memory's threshold on")
    nearest = (unit_rows(ham) @ unit_rows(entries).T).max(axis=1) if len(entries) else np.full(len(ham), -1.0)
    nearest = np.where(ham_blocked, -np.inf, nearest)  # already blocked: the memory adds nothing there
    t = max(threshold_for_fpr(nearest, budget), MEMORY_FLOOR, at_least)
    return float(t), float(np.mean(nearest >= t))
