"""Drift: what production messages are compared with, and the tests that compare them.

A run stores a `Reference` at training time (RUN/reference.safetensors): for a sample of held-out messages (the
validation split and the calibration half of the unused ham, never trained on) drawn at the natural class ratio
of the corpus (balanced data would otherwise look like drift against real traffic), the calibrated P(positive) of
each message, simple input features, and the pooled hidden states the head reads. `spamtune monitor` compares
recent traffic with it:

- scores: population stability index (PSI) of P(positive), over ten equal-width bins;
- input: a two-sample Kolmogorov-Smirnov test per feature (scipy), Bonferroni-corrected, with a minimum effect
  size so that a large sample does not alert on a trivial shift;
- embeddings: maximum mean discrepancy with an RBF kernel (median-heuristic bandwidth) and a permutation test
  (Gretton et al. 2012), on at most 300 messages a side.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ("chars", "letter_share", "digit_share", "upper_share", "punct_share", "space_share", "non_ascii_share",
            "non_latin_letter_share", "chars_per_token", "byte_piece_share")
PSI_ALERT, PSI_WARN = 0.25, 0.10  # the usual rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift
KS_ALPHA, KS_MIN_STAT = 0.001, 0.15  # a feature alerts when Bonferroni p < alpha and the KS statistic >= this
MMD_ALPHA = 0.01
MIN_SAMPLE = 50  # fewer recent messages than this: no test is run


def message_features(texts: Sequence[str], tokenizer: Any) -> np.ndarray:
    """(N, len(FEATURES)) per message: length, character-class shares, the share of non-Latin letters, characters
    per token and the share of tokens that are pieces of a character the tokenizer had to split into bytes (they
    decode to U+FFFD alone: unknown scripts, obfuscation)."""
    rows = []
    for text in texts:
        n = max(len(text), 1)
        letters = [c for c in text if c.isalpha()]
        non_latin = sum(1 for c in letters if not unicodedata.name(c, "").startswith("LATIN"))
        ids = tokenizer.encode(text[:4096])
        pieces = sum(1 for i in ids if "\ufffd" in tokenizer.decode([i]))
        rows.append([len(text), len(letters) / n, sum(c.isdigit() for c in text) / n,
                     sum(c.isupper() for c in text) / n,
                     sum(unicodedata.category(c).startswith("P") for c in text) / n,
                     sum(c.isspace() for c in text) / n, sum(ord(c) > 127 for c in text) / n,
                     non_latin / max(len(letters), 1), len(text) / max(len(ids), 1), pieces / max(len(ids), 1)])
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))


def natural_sample(labels: np.ndarray, positive_rate: float, seed: int = 0, limit: int = 600) -> np.ndarray:
    """Indices of a sample of `labels` (0/1) whose positive share is `positive_rate`, at most `limit` long (as
    large as the scarcer class allows)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    odds = positive_rate / max(1 - positive_rate, 1e-9)
    n_neg = min(len(neg), int(round(limit * (1 - positive_rate))), int(len(pos) / odds) if odds > 0 else len(neg))
    n_pos = min(len(pos), int(round(n_neg * odds)))
    return np.sort(np.concatenate([rng.choice(neg, n_neg, replace=False), rng.choice(pos, n_pos, replace=False)]))


@dataclass
class Reference:
    """The training-time picture production is compared with (see the module docstring)."""

    scores: np.ndarray  # (N,) calibrated P(positive) (binary runs; empty otherwise)
    score_weights: np.ndarray  # (N,) weights of the scores in the reference distribution (1 for a natural sample)
    features: np.ndarray  # (M, len(FEATURES))
    embeddings: np.ndarray | None  # (K, D) pooled hidden states; None for the hf backend
    positive_rate: float  # the corpus's share of the positive class

    FILE = "reference.safetensors"

    def save(self, run_dir: str | Path) -> None:
        from safetensors.numpy import save

        from spamtune.fsutil import atomic_file

        arrays = {"scores": self.scores, "score_weights": self.score_weights, "features": self.features}
        if self.embeddings is not None:
            arrays["embeddings"] = self.embeddings
        data = save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()},
                    metadata={"positive_rate": repr(self.positive_rate), "features": json.dumps(FEATURES)})
        with atomic_file(Path(run_dir) / self.FILE, "wb") as f:
            f.write(data)

    @classmethod
    def load(cls, run_dir: str | Path) -> Reference | None:
        """The run's reference, or None for runs trained before references were stored."""
        from safetensors import safe_open

        path = Path(run_dir) / cls.FILE
        if not path.is_file():
            return None
        with safe_open(str(path), "np") as f:
            meta = f.metadata() or {}
            if json.loads(meta.get("features", "[]")) != list(FEATURES):
                return None  # features of another version: not comparable
            get = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors handle)
        return cls(get["scores"], get["score_weights"], get["features"], get.get("embeddings"),
                   float(meta.get("positive_rate", "nan")))


# ---------------------------------------------------------------------------------------------------------------
# Tests


def psi(reference: np.ndarray, current: np.ndarray, weights: np.ndarray | None = None, bins: int = 10) -> float:
    """Population stability index of two samples of values in [0, 1] (reference optionally weighted)."""
    edges = np.linspace(0, 1, bins + 1)
    ref, _ = np.histogram(np.clip(reference, 0, 1), edges, weights=weights)
    cur, _ = np.histogram(np.clip(current, 0, 1), edges)
    ref = np.maximum(ref / max(ref.sum(), 1e-12), 1e-4)  # a floor keeps empty bins finite, as is customary
    cur = np.maximum(cur / max(cur.sum(), 1e-12), 1e-4)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def feature_drift(reference: np.ndarray, current: np.ndarray) -> list[dict[str, Any]]:
    """Per feature: KS statistic, Bonferroni-corrected p-value, and whether it alerts."""
    from scipy.stats import ks_2samp

    out = []
    for j, name in enumerate(FEATURES):
        res = ks_2samp(reference[:, j], current[:, j])
        p = min(1.0, float(res.pvalue) * len(FEATURES))
        out.append({"feature": name, "ks": float(res.statistic), "p": p,
                    "reference_mean": float(reference[:, j].mean()), "current_mean": float(current[:, j].mean()),
                    "alert": bool(p < KS_ALPHA and res.statistic >= KS_MIN_STAT)})
    return out


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD² between samples x and y with an RBF kernel (median heuristic) and its permutation p-value."""
    z = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(z**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    median = np.median(d2[np.triu_indices(len(z), 1)])
    k = np.exp(-d2 / max(median, 1e-12))
    m = len(x)

    def stat(idx: np.ndarray) -> float:
        a, b = idx[:m], idx[m:]
        kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
        n1, n2 = len(a), len(b)
        return float((kxx.sum() - np.trace(kxx)) / (n1 * (n1 - 1)) + (kyy.sum() - np.trace(kyy)) / (n2 * (n2 - 1))
                     - 2 * kxy.mean())

    rng = np.random.default_rng(seed)
    observed = stat(np.arange(len(z)))
    null = [stat(rng.permutation(len(z))) for _ in range(permutations)]
    p = (1 + sum(v >= observed for v in null)) / (permutations + 1)
    return observed, float(p)


def subsample(a: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    if len(a) <= n:
        return a
    return a[np.sort(np.random.default_rng(seed).choice(len(a), n, replace=False))]


def drift_summary(ref: Reference, scores: np.ndarray | None, features: np.ndarray | None,
                  embeddings: np.ndarray | None) -> dict[str, Any]:
    """Every test that has enough data, with its alert flag; `alerts` lists what fired."""
    out: dict[str, Any] = {"alerts": []}
    if scores is not None and len(ref.scores) and len(scores) >= MIN_SAMPLE:
        value = psi(ref.scores, scores, ref.score_weights)
        out["score_psi"] = {"psi": value, "n": len(scores), "alert": value > PSI_ALERT, "warn": value > PSI_WARN}
        if value > PSI_ALERT:
            out["alerts"].append(f"score drift: PSI {value:.3f} > {PSI_ALERT}")
    if features is not None and len(features) >= MIN_SAMPLE:
        rows = feature_drift(ref.features, features)
        out["input_drift"] = {"n": len(features), "features": rows, "alert": any(r["alert"] for r in rows)}
        if out["input_drift"]["alert"]:
            names = ", ".join(r["feature"] for r in rows if r["alert"])
            out["alerts"].append(f"input drift: {names}")
    if embeddings is not None and ref.embeddings is not None and len(embeddings) >= MIN_SAMPLE:
        stat, p = mmd_test(subsample(ref.embeddings, 300), subsample(embeddings, 300))
        out["embedding_drift"] = {"mmd2": stat, "p": p, "n": min(len(embeddings), 300), "alert": p < MMD_ALPHA}
        if p < MMD_ALPHA:
            out["alerts"].append(f"embedding drift: MMD² {stat:.4f}, permutation p {p:.3f}")
    return out

