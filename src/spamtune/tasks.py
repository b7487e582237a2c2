"""Problem types as objects: one `Task` per type with everything that differs between them — the targets read
from a Label column, the loss, what counts as correct, the scores shown to users, the decisions taken from those
scores, the metrics and the decision thresholds picked on validation.

The type is decided once, from labels.json (`task_for(label_set)`), and the object is carried from there:

    single_label   2+ classes, softmax, cross-entropy (optionally class-weighted); the spam filter
    multi_label    any subset of the labels, per-label sigmoid, BCE; one threshold per label (best F1 on validation)
    regression     one number, MSE (`num_labels=1` in transformers)

The losses are the ones `transformers` uses for its `problem_type`s, so both backends train the same objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from spamtune.data.labels import LabelSet, TaskName
from spamtune.errors import DataError

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # candidate decision thresholds, picked on validation

Prediction = tuple[str, float]  # (label, score) as the Python API and the CLI show it


class Task:
    """What a problem type does; see the module docstring. Subclasses override what differs."""

    name: ClassVar[TaskName]
    problem_type: ClassVar[str]  # transformers' `config.problem_type`
    has_accuracy: ClassVar[bool] = True
    picks_thresholds: ClassVar[bool] = False  # True: `pick_thresholds` runs on validation after training

    def targets(self, column: Sequence[Any], label_set: LabelSet) -> list:
        """A Label column of a prepared CSV -> training targets (class ids, floats or multi-hot rows)."""
        return [int(v) for v in column]

    def loss(self, logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def correct(self, logits: torch.Tensor, y: torch.Tensor) -> int:
        """Right answers in a batch (0 where the task has no accuracy)."""
        return 0

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) logits -> what users see: probabilities, or the predicted value (N,) for regression."""
        raise NotImplementedError

    def predictions(self, scores: np.ndarray, label_set: LabelSet, thresholds: list[float] | None = None,
                    threshold: float | None = None) -> list[Prediction]:
        raise NotImplementedError

    def pick_thresholds(self, y: np.ndarray, scores: np.ndarray) -> list[float] | None:
        """Decision thresholds picked on validation data; None when the task has none to pick."""
        return None

    def metrics(self, y: np.ndarray, scores: np.ndarray, label_set: LabelSet,
                thresholds: list[float] | None = None, threshold: float | None = None) -> dict[str, Any]:
        raise NotImplementedError


class SingleLabel(Task):
    """One class per message (2 or more classes)."""

    name = "single_label"
    problem_type = "single_label_classification"

    def loss(self, logits, y, weight=None):
        return F.cross_entropy(logits, y, weight=weight)

    def correct(self, logits, y):
        return int((logits.argmax(-1) == y).sum())

    def scores(self, logits):
        return torch.softmax(torch.from_numpy(logits), -1).numpy()

    @staticmethod
    def predict_ids(probs: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """Argmax, or for two classes P(class 1) >= threshold."""
        if threshold is not None and probs.shape[1] == 2:
            return (probs[:, 1] >= threshold).astype(int)
        return probs.argmax(axis=1)

    def predictions(self, scores, label_set, thresholds=None, threshold=None):
        preds = self.predict_ids(scores, threshold)
        return [(label_set.names[int(p)], float(scores[i, p])) for i, p in enumerate(preds)]

    def metrics(self, y, scores, label_set, thresholds=None, threshold=None):
        """Binary: the positive class is id 1 (spam); more classes: macro averages and one-vs-rest ROC-AUC."""
        from sklearn.metrics import (
            accuracy_score,
            confusion_matrix,
            matthews_corrcoef,
            precision_recall_fscore_support,
            roc_auc_score,
        )

        y_pred = self.predict_ids(scores, threshold)
        n_classes = scores.shape[1]
        binary = n_classes == 2
        p, r, f1, _ = precision_recall_fscore_support(y, y_pred, average="binary" if binary else "macro",
                                                      zero_division=0)
        try:
            auc = roc_auc_score(y, scores[:, 1]) if binary else roc_auc_score(
                y, scores, multi_class="ovr", labels=list(range(n_classes)))
        except ValueError:  # one class only in y (tiny subsets)
            auc = None
        return {"accuracy": float(accuracy_score(y, y_pred)), "precision": float(p), "recall": float(r),
                "f1": float(f1), "mcc": float(matthews_corrcoef(y, y_pred)),
                "roc_auc": None if auc is None else float(auc),
                "confusion_matrix": confusion_matrix(y, y_pred, labels=list(range(n_classes))).tolist()}


class MultiLabel(Task):
    """Any subset of the labels per message: Label holds names joined by "|" (empty for none)."""

    name = "multi_label"
    problem_type = "multi_label_classification"
    picks_thresholds = True

    def targets(self, column, label_set):
        label2id = label_set.label2id
        out = []
        for v in column:
            row = [0.0] * len(label2id)
            for name in filter(None, str(v).split("|")):
                if name not in label2id:
                    raise DataError(f"label {name!r} is not in labels.json")
                row[label2id[name]] = 1.0
            out.append(row)
        return out

    def loss(self, logits, y, weight=None):
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))

    def correct(self, logits, y):
        """Every label right at 0.5 (subset accuracy)."""
        return int(((logits >= 0) == y.bool()).all(-1).sum())

    def scores(self, logits):
        return torch.sigmoid(torch.from_numpy(logits)).numpy()

    def predictions(self, scores, label_set, thresholds=None, threshold=None):
        """("a|b", the lowest probability among the labels given; "" with 1 - the highest if none)."""
        on = scores >= np.asarray(thresholds or [0.5] * scores.shape[1])
        return [("|".join(label_set.names[j] for j in np.flatnonzero(row)),
                 float(p[row].min()) if row.any() else float(1 - p.max())) for row, p in zip(on, scores)]

    def pick_thresholds(self, y, scores):
        """Per label, the threshold with the best F1 on (validation) data; 0.5 where that label never occurs."""
        from sklearn.metrics import f1_score

        out = []
        for j in range(y.shape[1]):
            if y[:, j].sum() == 0:
                out.append(0.5)
                continue
            f1 = [f1_score(y[:, j], scores[:, j] >= t, zero_division=0) for t in THRESHOLD_GRID]
            out.append(float(THRESHOLD_GRID[int(np.argmax(f1))]))
        return out

    def metrics(self, y, scores, label_set, thresholds=None, threshold=None):
        """Subset accuracy, micro/macro F1, F1 per label."""
        from sklearn.metrics import accuracy_score, f1_score

        pred = (scores >= np.asarray(thresholds or [0.5] * scores.shape[1])).astype(int)
        per = f1_score(y, pred, average=None, zero_division=0)
        return {"subset_accuracy": float(accuracy_score(y, pred)),
                "f1_micro": float(f1_score(y, pred, average="micro", zero_division=0)),
                "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
                "f1_per_label": {label_set.names[j]: float(v) for j, v in enumerate(per)}}


class Regression(Task):
    """One number per message: Label holds it; the label set's one name is the target's."""

    name = "regression"
    problem_type = "regression"
    has_accuracy = False

    def targets(self, column, label_set):
        try:
            return [float(v) for v in column]
        except ValueError as e:
            raise DataError(f"regression labels must be numbers ({e})") from None

    def loss(self, logits, y, weight=None):
        return F.mse_loss(logits.squeeze(-1), y.to(logits.dtype))

    def scores(self, logits):
        return logits[:, 0]

    def predictions(self, scores, label_set, thresholds=None, threshold=None):
        return [(label_set.names[0], float(v)) for v in scores]

    def metrics(self, y, scores, label_set, thresholds=None, threshold=None):
        """MSE, MAE, R²."""
        from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

        return {"mse": float(mean_squared_error(y, scores)), "mae": float(mean_absolute_error(y, scores)),
                "r2": float(r2_score(y, scores)) if len(y) > 1 else None}


TASKS: dict[str, Task] = {t.name: t for t in (SingleLabel(), MultiLabel(), Regression())}


def task_for(label_set: LabelSet) -> Task:
    """The task a label set (labels.json) declares."""
    return TASKS[label_set.task]
