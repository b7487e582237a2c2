"""Figures (book §6.7 and beyond): loss and accuracy over epochs with an examples-seen axis; the confusion matrix;
a reliability diagram (calibration); precision-recall and FPR-vs-threshold curves with the operating point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_values(epochs_seen: Sequence[float], examples_seen: Sequence[int], train_values: Sequence[float],
                val_values: Sequence[float], label: str, out_stem: str | Path) -> list[Path]:
    """The book's `plot_values`: train vs validation over epochs, with a second x-axis of examples seen.
    Writes `<out_stem>.png` and `.pdf`; returns their paths."""
    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()
    ax2 = ax1.twiny()  # same data on an examples-seen axis
    ax2.plot(examples_seen, train_values, alpha=0)
    ax2.set_xlabel("Examples seen")
    fig.tight_layout()
    paths = [Path(f"{out_stem}.{ext}") for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def plot_confusion_matrix(cm: Sequence[Sequence[int]], labels: Sequence[str], out: str | Path,
                          title: str = "Test confusion matrix") -> Path:
    """Counts with row-normalised shading (rows: true label, columns: predicted)."""
    counts = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return Path(out)


def plot_reliability(raw: np.ndarray, calibrated: np.ndarray, y: np.ndarray, out: str | Path, bins: int = 10) -> Path:
    """Accuracy against confidence (top label) in equal-width bins, before and after temperature scaling; the
    diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    for probs, name, marker in ((raw, "before", "o"), (calibrated, "after (temperature)", "s")):
        conf, correct = probs.max(axis=1), (probs.argmax(axis=1) == y)
        idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
        pts = [(conf[idx == b].mean(), correct[idx == b].mean()) for b in range(bins) if (idx == b).any()]
        ax.plot(*zip(*pts), marker=marker, label=name)
    ax.set_xlabel("confidence (probability of the predicted label)")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability on test")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return Path(out)


def plot_thresholds(p_test: np.ndarray, y_test: np.ndarray, p_report_ham: np.ndarray, op, out: str | Path) -> Path:
    """Left: precision-recall on test with the operating point marked. Right: against the threshold, test recall
    and the false-positive rate on the report half of the unused ham (log scale), with the block and review
    thresholds."""
    from sklearn.metrics import precision_recall_curve

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    precision, recall, _ = precision_recall_curve(y_test, p_test)
    ax1.plot(recall, precision)
    ax1.set_xlabel("recall (test)")
    ax1.set_ylabel("precision (test)")
    ax1.set_title("Precision-recall")
    grid = np.unique(np.concatenate([np.linspace(0, 1, 201), p_test]))
    ax2.plot(grid, [(p_test[y_test == 1] >= t).mean() for t in grid], label="recall (test)")
    if len(p_report_ham):
        fpr = [max((p_report_ham >= t).mean(), 1e-5) for t in grid]
        ax2b = ax2.twinx()
        ax2b.plot(grid, fpr, color="tab:red", label="FPR (report half)")
        ax2b.set_yscale("log")
        ax2b.set_ylabel("false-positive rate", color="tab:red")
    if op is not None:
        pred = p_test >= op.block_threshold
        r = pred[y_test == 1].mean()
        prec = (pred & (y_test == 1)).sum() / max(pred.sum(), 1)
        ax1.plot([r], [prec], "o", color="tab:red", label="operating point")
        ax1.legend(fontsize=8)
        for t, style, name in ((op.block_threshold, "-", "block"), (op.review_threshold, ":", "review")):
            ax2.axvline(t, color="black", ls=style, lw=1, label=name)
    ax2.set_xlabel("threshold on P(positive)")
    ax2.set_ylabel("recall")
    ax2.set_title("Against the threshold")
    ax2.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return Path(out)
