"""Robustness to obfuscated spam (the course's "adversarial examples"): spam recall on the book's test split with
every spam message under each perturbation of data/perturb.py (ham stays clean), next to the clean figures, for
spamtune without normalization, with `--normalize nfkc` (the default), with `--augment 1`, and for the TF-IDF +
linear SVM peer with and without the same normalization in front of it.

    python -m benchmarks.robustness --data-dir data --runs-dir runs/robustness   # trains the 3 runs if absent
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import chart_path, publish
from benchmarks.peers import Setting, fit_tfidf_svm
from spamtune.data import read_split
from spamtune.data.perturb import PERTURBATIONS
from spamtune.normalize import normalize_text

VARIANTS = {  # run name -> TrainArgs overrides
    "spamtune, no normalization": {"normalize": "none"},
    "spamtune, nfkc (default)": {},
    "spamtune, nfkc + augment 1": {"augment": 1},
}


def train_variants(data_dir: Path, runs_dir: Path, extra: dict) -> dict[str, Path]:
    from spamtune.config import TrainArgs
    from spamtune.training import train_run

    runs = {}
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        run = runs_dir / f"variant{i}"
        if not (run / "metrics.json").is_file():
            train_run(TrainArgs(**{**overrides, **extra}), data_dir, run, overwrite=run.exists())
        runs[name] = run
    return runs


def spamtune_rows(runs: dict[str, Path], data_dir: Path, limit: int | None) -> dict[str, dict]:
    from spamtune.evaluation.report import decides_spam, robustness
    from spamtune.inference import TextClassifier

    return {name: robustness(decides_spam(TextClassifier.load(run), None, 32), data_dir / "test.csv",
                             tuple(PERTURBATIONS), limit=limit) for name, run in runs.items()}


def tfidf_rows(data_dir: Path, limit: int | None) -> dict[str, dict]:
    """The peer, fitted on train + validation (raw, or normalized like a spamtune run), through `robustness`."""
    from spamtune.evaluation.report import robustness

    train = pd.concat([read_split(data_dir / f"{n}.csv")[:limit] for n in ("train", "validation")])
    out = {}
    for name, norm in (("TF-IDF + linear SVM", "none"), ("TF-IDF + linear SVM, nfkc", "nfkc")):
        fitted = fit_tfidf_svm(train.assign(Text=[normalize_text(t, norm) for t in train["Text"]]),
                               Setting(Path(".")))

        def is_spam(texts: list[str], fitted=fitted, norm=norm) -> np.ndarray:
            return fitted.score([normalize_text(t, norm) for t in texts]) >= fitted.threshold

        out[name] = robustness(is_spam, data_dir / "test.csv", tuple(PERTURBATIONS), limit=limit)
    return out


def table(results: dict[str, dict]) -> str:
    names = list(PERTURBATIONS)
    lines = ["| model | clean accuracy % | clean spam caught % | " + " | ".join(f"{n} %" for n in names) + " |",
             "|---" * (3 + len(names)) + "|"]
    for model, rows in results.items():
        lines.append(f"| {model} | {rows['clean']['accuracy'] * 100:.2f} | {rows['clean']['recall'] * 100:.2f} | "
                     + " | ".join(f"{rows[n]['recall'] * 100:.1f}" for n in names) + " |")
    return "\n".join(lines)


def chart(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["clean", *PERTURBATIONS]
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(results)
    for i, (model, rows) in enumerate(results.items()):
        ax.bar(np.arange(len(cols)) + i * width, [rows[c]["recall"] * 100 for c in cols], width, label=model)
    ax.set_xticks(np.arange(len(cols)) + 0.4 - width / 2, cols, rotation=20)
    ax.set_ylabel("test spam caught %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Spam recall under obfuscation (book test split; ham clean)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("data"))
    ap.add_argument("--runs-dir", type=Path, default=Path("runs/robustness"), help="the 3 runs (trained if absent)")
    ap.add_argument("--chart", type=Path, help="draw the chart here (default: benchmarks/robustness.png, the "
                    "committed chart, unless --no-record)")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    runs = train_variants(a.data_dir, a.runs_dir, {})
    results = {**spamtune_rows(runs, a.data_dir, None), **tfidf_rows(a.data_dir, None)}
    drawn = chart_path(a.chart, Path(__file__).with_name("robustness.png"), record=not a.no_record)
    if drawn is not None:
        chart(results, drawn)
    some = next(iter(results.values()))
    body = "\n".join([table(results), "", f"Recall on the {some['clean']['n_spam']} test spam under each perturbation "
                      "(every one changes every spam message except url_disguise and phone_disguise, which need a "
                      "link or a number: " + ", ".join(f"{p} {some[p]['changed']}" for p in PERTURBATIONS) + "). "
                      f"Argmax decisions. Chart: {drawn.name if drawn else 'not drawn'}."])
    publish("Robustness: spam recall under obfuscation", body, record=not a.no_record)


if __name__ == "__main__":
    main()
