"""Evaluating a run (book §6.7 and beyond): accuracy on every split, precision/recall/F1/MCC/ROC-AUC and the
confusion matrix on test (scikit-learn, through the run's Task), and the false-positive rate on `unused.csv`: real
ham the balanced split never saw. Writes RUN/eval.json and RUN/confusion_matrix.png (a --limit evaluation writes
RUN/eval-limitN.json and leaves those alone)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from spamtune.data import read_split
from spamtune.errors import ConfigError
from spamtune.fsutil import check_writable_dir, write_json
from spamtune.inference import TextClassifier, check_threshold
from spamtune.tasks import SingleLabel

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
LENGTH_BINS = (0, 40, 80, 120, 160)  # characters: short messages are where spam slips through


def recall_by_length(texts: list[str], y: np.ndarray, pred: np.ndarray, positive: int = 1) -> list[dict[str, Any]]:
    """Recall of the positive class (spam) per message-length bin: [{"chars": "0-39", "n": ..., "recall": ...}]."""
    lengths = np.array([len(t) for t in texts])
    edges = [*LENGTH_BINS, np.inf]
    out = []
    for lo, hi in zip(edges, edges[1:]):
        mask = (lengths >= lo) & (lengths < hi) & (y == positive)
        label = f"{lo}-{int(hi) - 1}" if np.isfinite(hi) else f"{lo}+"
        out.append({"chars": label, "n": int(mask.sum()),
                    "recall": float((pred[mask] == positive).mean()) if mask.any() else None})
    return out


def evaluate_run(run_dir: str | os.PathLike, data_dir: str | os.PathLike, threshold: float | None = None,
                 limit: int | None = None, unused: bool = True, batch_size: int = 16,
                 progress: bool = True) -> dict[str, Any]:
    """Score a run on every split; write `eval.json` and `confusion_matrix.png` into the run directory."""
    from spamtune.plots import plot_confusion_matrix

    check_threshold(threshold)
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    run_dir, data_dir = Path(run_dir), Path(data_dir)
    check_writable_dir(run_dir)  # before the model loads, not after the scoring
    # a partial evaluation never replaces the full one
    report = run_dir / ("eval.json" if limit is None else f"eval-limit{limit}.json")
    clf = TextClassifier.load(run_dir)
    frames = {name: read_split(data_dir / f"{name}.csv") for name in SPLITS}
    if unused and (data_dir / "unused.csv").is_file():
        frames["unused"] = read_split(data_dir / "unused.csv")
    if limit:
        frames = {k: v[:limit] for k, v in frames.items()}
    result: dict[str, Any] = {"run": str(run_dir), "run_id": clf.run_id, "threshold": threshold,
                              "labels": clf.label_names, "accuracy": {}, "n": {}}
    if clf.task.name != "single_label":
        return _evaluate_task(clf, frames, result, report, batch_size, progress)
    for name, df in frames.items():
        if df.empty:
            continue
        probs = clf.predict_proba(list(df["Text"]), batch_size, progress)
        y = df["Label"].to_numpy()
        if name == "unused":
            # unused rows are the undersampled majority class (ham): every positive prediction is a false positive
            pred = SingleLabel.predict_ids(probs, threshold)
            result["fpr_unused"] = float((pred != y).mean())
            result["n"]["unused"] = len(df)
            continue
        m = clf.task.metrics(y, probs, clf.label_set, threshold=threshold)
        result["accuracy"][name] = m["accuracy"]
        result["n"][name] = len(df)
        if name == "test":
            result.update({k: v for k, v in m.items() if k != "accuracy"})
            if len(clf.label_names) == 2:
                result["recall_by_length"] = recall_by_length(list(df["Text"]), y,
                                                              SingleLabel.predict_ids(probs, threshold))
    result.setdefault("fpr_unused", None)
    write_json(report, result)
    if "confusion_matrix" in result and limit is None:
        plot_confusion_matrix(result["confusion_matrix"], clf.label_names, run_dir / "confusion_matrix.png")
    return result


def _evaluate_task(clf: TextClassifier, frames: dict, result: dict[str, Any], report: Path, batch_size: int,
                   progress: bool) -> dict[str, Any]:
    """Multi-label and regression runs (HF backend): the task's metrics per split."""
    result.update(task=clf.task.name, thresholds=clf.thresholds, metrics={})
    for name, df in frames.items():
        if df.empty or name == "unused":
            continue
        scores = clf.predict_proba(list(df["Text"]), batch_size, progress)
        y = np.asarray(clf.task.targets(df["Label"], clf.label_set))
        result["metrics"][name] = clf.task.metrics(y, scores, clf.label_set, clf.thresholds)
        result["n"][name] = len(df)
    write_json(report, result)
    return result


def format_report(r: dict[str, Any]) -> str:
    """eval.json as the lines `spamtune evaluate` prints."""
    if "metrics" in r:  # multi-label / regression
        return "\n".join(f"{split}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                 for k, v in m.items()) for split, m in r["metrics"].items())
    lines = ["accuracy: " + ", ".join(f"{k} {v:.2%}" for k, v in r["accuracy"].items())]
    if "f1" in r:
        auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.4f}"
        lines.append(f"test: precision {r['precision']:.2%}, recall {r['recall']:.2%}, F1 {r['f1']:.2%}, "
                     f"MCC {r['mcc']:.4f}, ROC-AUC {auc}")
        names = r["labels"]
        width = max(map(len, names)) + 2
        lines.append("confusion matrix (rows true, columns predicted):")
        lines.append(" " * width + "".join(f"{lab:>{width}}" for lab in names))
        for lab, row in zip(names, r["confusion_matrix"]):
            lines.append(f"{lab:<{width}}" + "".join(f"{v:>{width}}" for v in row))
    if r.get("recall_by_length"):
        lines.append(f"recall of {r['labels'][1]} on test by message length: " + ", ".join(
            f"{b['chars']} chars {b['recall']:.0%} (n={b['n']})" for b in r["recall_by_length"] if b["n"]))
    if r.get("fpr_unused") is not None:
        lines.append(f"false-positive rate on {r['n']['unused']} unused real messages: {r['fpr_unused']:.2%}")
    return "\n".join(lines)
