"""`spamtune audit`: likely label errors in the training data and in the learnt corrections (Confident Learning,
Northcutt et al. 2021, with cleanlab's `find_label_issues`).

    result = audit(run_dir, data_dir, AuditOptions(splits=("train", "validation")), corrections=rows)
    result.issues            # a DataFrame, most likely error first: source, where, text, label, suggested, p_label

Confident learning needs probabilities that did not see the label they judge: out-of-fold probabilities. Each
message gets the run's frozen layers' output averaged over its tokens (the fine-tuning never changed those layers,
so the features hold no trace of the training labels), then `folds` logistic regressions each score the fold they
were not fitted on (scikit-learn's `cross_val_predict`). A fit of the linear model takes seconds where a fine-tuning
per fold would take minutes; the forward pass through the frozen layers is the cost (one pass per message).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spamtune.errors import ConfigError, DataError

COLUMNS = ["rank", "source", "where", "label", "suggested", "p_label", "text"]


@dataclass
class AuditOptions:
    splits: tuple[str, ...] = ("train", "validation")  # of the data dir (test too, to look at what runs miss)
    folds: int = 5
    seed: int = 0
    batch_size: int = 16
    progress: bool = True


@dataclass
class AuditResult:
    issues: pd.DataFrame  # COLUMNS, the likeliest error first
    scored: pd.DataFrame  # every audited message in input order: source, where, text, label, suggested, p_label
    audited: int  # messages looked at
    by_source: dict[str, int]  # audited per source
    folds: int
    oof_accuracy: float  # of the out-of-fold linear model against the given labels (how informative it is)

    def summary(self) -> str:
        per = ", ".join(f"{s} {int((self.issues['source'] == s).sum())} of {n}" for s, n in self.by_source.items())
        return (f"{len(self.issues)} likely label errors among {self.audited} messages ({per}); out-of-fold "
                f"accuracy of the {self.folds}-fold linear model on the frozen features: {self.oof_accuracy:.1%}")


def audit_frame(run_dir: str | Path, data_dir: str | Path, options: AuditOptions,
                corrections: Sequence[dict[str, Any]] = ()) -> pd.DataFrame:
    """The messages to audit: source (a split's name, or "correction"), where (the split's data row, counted from
    1, or the prediction id), text, label (a name)."""
    from spamtune.data.labels import LabelSet
    from spamtune.data.prepare import read_split

    data_dir = Path(data_dir)
    names = LabelSet.from_file(data_dir / "labels.json").names
    parts = []
    for split in options.splits:
        df = read_split(data_dir / f"{split}.csv")
        if len(df) and (df["Label"].min() < 0 or df["Label"].max() >= len(names)):
            raise DataError(f"{data_dir / split}.csv: a label id is outside labels.json's {len(names)} classes")
        parts.append(pd.DataFrame({"source": split, "where": [str(i) for i in range(1, len(df) + 1)],
                                   "text": df["Text"], "label": [names[int(k)] for k in df["Label"]]}))
    rows = [r for r in corrections if r.get("text")]
    if rows:
        unknown = sorted({r["label"] for r in rows} - set(names))
        if unknown:
            raise DataError(f"corrections with labels the run does not have: {', '.join(unknown)}")
        parts.append(pd.DataFrame({"source": "correction", "where": [r["id"] for r in rows],
                                   "text": [r["text"] for r in rows], "label": [r["label"] for r in rows]}))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["source", "where", "text",
                                                                                      "label"])
    frame = frame[frame["text"].str.strip() != ""].reset_index(drop=True)
    if not len(frame):
        raise DataError("nothing to audit: the splits and corrections hold no messages")
    return frame


def audit(run_dir: str | Path, data_dir: str | Path, options: AuditOptions | None = None,
          corrections: Sequence[dict[str, Any]] = ()) -> AuditResult:
    """Likely label errors among the splits' messages and the corrections (see the module docstring)."""
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from spamtune.inference import TextClassifier

    options = options or AuditOptions()
    if options.folds < 2:
        raise ConfigError(f"--folds {options.folds}: at least 2 (each message is scored by a model fitted "
                          "without it)")
    frame = audit_frame(run_dir, data_dir, options, corrections)
    clf = TextClassifier.load(run_dir)
    names = clf.label_names
    y = np.array([names.index(label) for label in frame["label"]])
    counts = np.bincount(y, minlength=len(names))
    if (counts[counts > 0] < options.folds).any() or (counts > 0).sum() < 2:
        raise DataError(f"too few messages per label for {options.folds} folds "
                        f"({', '.join(f'{n} {c}' for n, c in zip(names, counts))})")
    features = clf.frozen_features(frame["text"].tolist(), options.batch_size, options.progress)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(options.folds, shuffle=True, random_state=options.seed)
    probs = cross_val_predict(model, features, y, cv=folds, method="predict_proba")
    ranked = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
    scored = frame.assign(suggested=[names[int(k)] for k in probs.argmax(1)], p_label=probs[np.arange(len(y)), y])
    issues = scored.iloc[ranked].copy()
    issues.insert(0, "rank", range(1, len(ranked) + 1))
    issues["p_label"] = issues["p_label"].round(4)
    by_source = {str(s): int(n) for s, n in frame["source"].value_counts(sort=False).items()}
    return AuditResult(issues[COLUMNS].reset_index(drop=True), scored, len(frame), by_source, options.folds,
                       float((probs.argmax(1) == y).mean()))
