"""Figures (book §6.7): loss and accuracy over epochs with an examples-seen axis; the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

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
    import numpy as np

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
