"""`LabelSet`: the classes of a data set or a run and its problem type, as stored in labels.json.

    {"id2label": {"0": "ham", "1": "spam"}, "label2id": {"ham": 0, "spam": 1}}            (single-label)
    {"task": "multi_label" | "regression", "id2label": ..., "label2id": ...}            (the HF backend's others)

Ids follow the sorted label names (ham=0, spam=1 for the SMS set). A regression label set has one name: the
target's.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from spamtune.errors import DataError

TaskName = Literal["single_label", "multi_label", "regression"]


# Of two classes, id 1 (the second name in sorted order: "spam" after "ham") is the positive one: what an
# operating point blocks, FPR counts against id 0 and recall over id 1. Every binary rule reads it from here.
POSITIVE_ID = 1


@dataclass(frozen=True)
class LabelSet:
    """Class names in id order and the problem type."""

    names: tuple[str, ...]
    task: TaskName = "single_label"

    def __len__(self) -> int:
        return len(self.names)

    @property
    def binary(self) -> bool:
        """Two single-label classes: a run that allows, reviews or blocks."""
        return self.task == "single_label" and len(self.names) == 2

    @property
    def positive(self) -> str | None:
        """A binary set's positive label (the one an operating point blocks: spam), else None."""
        return self.names[POSITIVE_ID] if self.binary else None

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    @classmethod
    def from_values(cls, values: Iterable[str]) -> LabelSet:
        """The label set of a column of label values: sorted unique names, at least two."""
        names = tuple(sorted(set(values)))
        if len(names) < 2:
            raise DataError(f"need at least two labels, found {list(names)}")
        return cls(names)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {} if self.task == "single_label" else {"task": self.task}
        return {**d, "id2label": {str(i): n for i, n in enumerate(self.names)}, "label2id": self.label2id}

    @classmethod
    def from_json(cls, d: Any, where: str = "labels.json") -> LabelSet:
        """Validate and read a labels.json object; anything malformed is one `DataError` naming `where`."""
        if not isinstance(d, dict) or not isinstance(d.get("id2label"), dict):
            raise DataError(f"{where}: not a label map (expected an object with id2label)")
        task = d.get("task", "single_label")
        if task not in typing.get_args(TaskName):
            raise DataError(f"{where}: unknown task {task!r} (expected one of {', '.join(typing.get_args(TaskName))})")
        id2label = d["id2label"]
        n = len(id2label)
        if sorted(id2label, key=str) != sorted(map(str, range(n))) or n < (1 if task == "regression" else 2):
            raise DataError(f"{where}: id2label must map the ids 0..n-1 to names (n >= 2; 1 for regression)")
        names = tuple(id2label[str(i)] for i in range(n))
        if not all(isinstance(x, str) and x for x in names) or len(set(names)) != n:
            raise DataError(f"{where}: label names must be distinct non-empty strings")
        label2id = d.get("label2id")
        if label2id is not None and label2id != {name: i for i, name in enumerate(names)}:
            raise DataError(f"{where}: label2id does not invert id2label")
        return cls(names, task)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> LabelSet:
        from spamtune.fsutil import read_json

        return cls.from_json(read_json(path, DataError), str(path))
