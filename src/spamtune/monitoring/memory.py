"""The memory of corrections' entries, read from the prediction store (inference/memory.py matches them): every
correction with the store's rules applied, and the cheap revision every serving process polls.

    check = memory_check(store, clf)     # None for runs without a memory (not binary, not ours, trained before it)
    clf.pipeline.put_after_model(check)
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spamtune.calibration.decisions import MemoryCalibration
from spamtune.inference.memory import ACTIVE, MemoryCheck, MemoryEntry
from spamtune.monitoring.store import TRUSTED_SOURCES, PredictionStore, _utc, needs_review

if TYPE_CHECKING:
    from spamtune.inference import TextClassifier

log = logging.getLogger(__name__)

# a retrain's data has a provenance column (lifecycle/corrections.py): "data", or LEARNT_PREFIX + a prediction id
SOURCE_COLUMN = "Source"
LEARNT_PREFIX = "feedback:"


class StoreMemory:
    """The corrections of a store as a `MemorySource`: each with the store's status (no text, repeated,
    conflicting corrections, needs review) or "active"."""

    def __init__(self, store: PredictionStore) -> None:
        self.store = store

    def revision(self) -> Any:
        return self.store.feedback_revision()

    def entries(self) -> list[MemoryEntry]:
        rows = self.store.corrections()  # oldest correction first
        out = [_entry(r) for r in rows]
        by_text: dict[str, list[MemoryEntry]] = defaultdict(list)
        for e in out:
            if e.status == ACTIVE and e.text is not None:
                by_text[e.text].append(e)
        for group in by_text.values():
            if len({e.label for e in group}) > 1:
                for e in group:
                    e.status = "conflicting corrections"
            for e in group[:-1]:  # the latest correction of a message stands for the others
                if e.status == ACTIVE:
                    e.status = "repeated"
        return out


def _entry(r: dict[str, Any]) -> MemoryEntry:
    scores = r["scores"] if isinstance(r["scores"], dict) else {}
    confidence = float(scores.get(r["predicted"], 0.0))
    e = MemoryEntry(id=r["id"], text=r["text"], label=r["label"], source=r["source"],
                    trusted=r["source"] in TRUSTED_SOURCES, corrected_at=_utc(r["updated_at"]))
    if r["text"] is None:
        e.status = "no text"
    elif needs_review(r["source"], r["label"], r["predicted"], confidence):
        e.status = "needs review"
    return e


def learnt_ids(data_dir: str | None) -> set[str]:
    """Prediction ids of the corrections a run learnt: its data directory's provenance column (a retrain's)."""
    import pandas as pd

    out: set[str] = set()
    for name in ("train.csv", "validation.csv"):
        path = Path(data_dir or "") / name
        if not data_dir or not path.is_file():
            continue
        try:
            head = pd.read_csv(path, nrows=0).columns
            if SOURCE_COLUMN not in head:
                continue
            sources = pd.read_csv(path, usecols=[SOURCE_COLUMN], dtype=str)[SOURCE_COLUMN].dropna()
        except (OSError, ValueError) as e:  # a data directory that moved or broke: nothing retires
            log.warning("cannot read which corrections %s learnt (%s)", path, e)
            continue
        out |= {s.removeprefix(LEARNT_PREFIX) for s in sources if s.startswith(LEARNT_PREFIX)}
    return out


def memory_check(store: PredictionStore, clf: TextClassifier) -> MemoryCheck | None:
    """The store's corrections as a memory for `clf`, or None where the run has none: runs deciding between two
    labels with a model of ours in torch, trained with a memory calibration (RUN/memory.safetensors)."""
    if not clf.binary or clf.pipeline is None or not clf.has_pooled:
        return None
    calibration = MemoryCalibration.load(clf.run.run_dir)
    if calibration is None:
        log.info("run %s has no memory calibration (trained before it): no memory of corrections", clf.run_id)
        return None
    return MemoryCheck(StoreMemory(store), clf, calibration, learnt_ids(clf.run.run_config.data_dir))
