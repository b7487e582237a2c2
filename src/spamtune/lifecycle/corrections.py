"""From the prediction store to training rows: which corrections a retrain learns, which it holds out for the
champion-vs-challenger comparison, and why each of the others is left out.

The rules, in order (a correction leaves at the first that applies):

    learn: false                 kept out by whoever corrected it
    no text                      recorded with --no-store-text: only a hash, nothing to learn
    unknown label                not one of the data's labels
    conflicting corrections      the same message corrected to different labels
    in an evaluation split       the message is in test.csv or unused.csv: learning it would inflate the figures
                                 every comparison is made on (never added to test, either)
    already in the data          in train/validation with the same label: nothing new
    contradicts the data         in train/validation with another label: the curated data wins; fix it there
    needs review                 an end user's correction (POST /feedback) against a prediction at least
                                 `confident` sure: the shape of poisoning. Listed, neither learnt nor used as
                                 truth in the comparison, until an operator confirms it (`spamtune feedback ID
                                 LABEL`, or /admin) or the retrain is told to learn unreviewed ones
    held out                     a fixed share of operators' corrected messages (by their sha256, so a message
                                 is always on the same side) kept for the comparison, never learnt; an end
                                 user's correction is never ground truth for a comparison
    over the cap                 beyond `max_share` of the training rows (the newest are kept)
    over the untrusted cap       end users' corrections beyond `untrusted_share` of the training rows: however
                                 many a client posts, they cannot dominate what is learnt

What remains goes to train and validation (by sha256 again, at the data's 7:1), with a provenance column.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import math
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from spamtune.config import CorrectionPolicy
from spamtune.data import LABELS_FILE, LabelSet, read_split
from spamtune.data.perturb import PERTURBATIONS, perturb
from spamtune.monitoring.memory import LEARNT_PREFIX, SOURCE_COLUMN
from spamtune.monitoring.store import TRUSTED_SOURCES, needs_review

HOLDOUT_FILE = "holdout.csv"  # beside the splits in a retrain's data directory
SOURCE = SOURCE_COLUMN  # the provenance column: "data", or "feedback:<prediction id>"


@dataclass
class Correction:
    id: str  # the prediction's id in the store
    text: str | None
    label: str  # the corrected label
    predicted: str
    confidence: float  # the answering model's probability of `predicted`
    source: str  # api / cli / admin
    learn: bool
    updated_at: datetime.datetime

    def row(self, label_set: LabelSet) -> dict[str, Any]:
        return {"Label": label_set.label2id[self.label], "Text": self.text, SOURCE: f"{LEARNT_PREFIX}{self.id}"}


@dataclass
class CorrectionSet:
    train: list[Correction] = field(default_factory=list)
    validation: list[Correction] = field(default_factory=list)
    holdout: list[Correction] = field(default_factory=list)
    left_out: dict[str, list[Correction]] = field(default_factory=lambda: defaultdict(list))  # reason -> them

    @property
    def learnt(self) -> list[Correction]:
        return self.train + self.validation

    @property
    def needs_review(self) -> list[Correction]:
        return self.left_out.get("needs review", [])

    def summary(self) -> dict[str, Any]:
        return {"train": len(self.train), "validation": len(self.validation), "holdout": len(self.holdout),
                "left_out": {reason: len(cs) for reason, cs in self.left_out.items() if cs},
                "needs_review": [{"id": c.id, "text": c.text, "label": c.label, "predicted": c.predicted,
                                  "confidence": c.confidence, "source": c.source} for c in self.needs_review]}


def _bucket(text: str, salt: bytes) -> float:
    """A fixed number in [0, 1) per message and purpose (independent of the unused-ham halves)."""
    return int.from_bytes(hashlib.sha256(salt + text.encode("utf-8", "surrogatepass")).digest()[:8], "big") / 2**64


def from_store_rows(rows: list[dict[str, Any]]) -> list[Correction]:
    """`PredictionStore.corrections()` rows as `Correction`s."""
    out = []
    for r in rows:
        scores = r["scores"] if isinstance(r["scores"], dict) else {}
        out.append(Correction(id=r["id"], text=r["text"], label=r["label"], predicted=r["predicted"],
                              confidence=float(scores.get(r["predicted"], 0.0)), source=r["source"],
                              learn=bool(r["learn"]), updated_at=r["updated_at"]))
    return out


def select_corrections(corrections: list[Correction], data_dir: str | Path, label_set: LabelSet,
                       policy: CorrectionPolicy, limit: int | None = None) -> CorrectionSet:
    """Sort every correction into train / validation / holdout or a left-out reason (module docstring).

    Args:
        limit: the champion's --limit: only the first N rows of each split count as its data.
    """
    data_dir = Path(data_dir)
    out = CorrectionSet()
    splits = {name: read_split(data_dir / f"{name}.csv")[:limit] if name in ("train", "validation")
              else read_split(data_dir / f"{name}.csv")
              for name in ("train", "validation", "test", "unused") if (data_dir / f"{name}.csv").exists()}
    evaluation = {t for name in ("test", "unused") if name in splits for t in splits[name]["Text"]}
    known: dict[str, set[str]] = defaultdict(set)  # training text -> its label names
    for name in ("train", "validation"):
        for label_id, text in zip(splits[name]["Label"], splits[name]["Text"]):
            known[text].add(label_set.names[int(label_id)])

    by_text: dict[str, list[Correction]] = defaultdict(list)
    for c in corrections:
        if not c.learn:
            out.left_out["learn: false"].append(c)
        elif c.text is None:
            out.left_out["no text"].append(c)
        elif c.label not in label_set.names:
            out.left_out["unknown label"].append(c)
        else:
            by_text[c.text].append(c)

    candidates = []
    for text, group in by_text.items():
        if len({c.label for c in group}) > 1:
            out.left_out["conflicting corrections"].extend(group)
            continue
        group.sort(key=lambda c: c.updated_at)
        c = group[-1]  # one row per message: the latest correction stands for the others
        out.left_out["repeated"].extend(group[:-1])
        if text in evaluation:
            out.left_out["in an evaluation split"].append(c)
        elif text in known and known[text] == {c.label}:
            out.left_out["already in the data"].append(c)
        elif text in known:
            out.left_out["contradicts the data"].append(c)
        elif (needs_review(c.source, c.label, c.predicted, c.confidence, policy.confident)
              and not policy.learn_unreviewed):
            out.left_out["needs review"].append(c)
        elif c.source in TRUSTED_SOURCES and _bucket(text, b"holdout:") < policy.holdout:
            out.holdout.append(c)
        else:
            candidates.append(c)

    n_data = len(splits["train"]) + len(splits["validation"])

    def cap(share: float) -> int:  # corrections / all rows <= share
        return math.floor(share * n_data / (1 - share))

    candidates.sort(key=lambda c: c.updated_at, reverse=True)
    untrusted = [c for c in candidates if c.source not in TRUSTED_SOURCES]
    dropped = {id(c) for c in untrusted[cap(policy.untrusted_share):]}
    out.left_out["over the untrusted cap"].extend(c for c in untrusted if id(c) in dropped)
    candidates = [c for c in candidates if id(c) not in dropped]
    out.left_out["over the cap"].extend(candidates[cap(policy.max_share):])
    for c in candidates[: cap(policy.max_share)]:
        assert c.text is not None
        (out.validation if _bucket(c.text, b"validation:") < policy.validation else out.train).append(c)
    out.left_out = {k: v for k, v in out.left_out.items() if v}
    return out


def boosted(rows: list[dict[str, Any]], copies: int, seed: int = 0) -> list[dict[str, Any]]:
    """`rows` (learnt corrections) and `copies` more of each: the message under each perturbation in turn
    (homoglyphs, leetspeak, spacing...: data/perturb.py), or the message again where one changes nothing. A few
    corrections then weigh like many in the loss, and in the forms spammers vary them in."""
    names = sorted(PERTURBATIONS)
    out = list(rows)
    for r in rows:
        for k in range(copies):
            name = names[k % len(names)]  # every perturbation in turn; a repeat draws again (seed + k)
            out.append({**r, "Text": perturb(r["Text"], name, seed + k)})
    return out


def boost_copies(policy: CorrectionPolicy, n_train_rows: int, n_learnt: int) -> int:
    """Copies per learnt correction: `policy.boost`, fewer where the corrections and their copies would pass
    `max_share` of the training rows."""
    if not n_learnt:
        return 0
    room = math.floor(policy.max_share * n_train_rows / (1 - policy.max_share))
    return max(0, min(policy.boost, room // n_learnt - 1))


def write_data(out: Path, data_dir: str | Path, selected: CorrectionSet, label_set: LabelSet,
               limit: int | None = None, copies: int = 0) -> None:
    """A data directory for the challenger: the champion's splits (train and validation cut at its --limit) with
    the learnt corrections appended and a provenance column (in train with `copies` boosted copies each:
    `boosted`); test, unused and labels.json as they were; the held-out corrections in holdout.csv. `out` is an
    empty directory the caller owns (a retrain claims it exclusively, so two retrains can never write into
    one)."""
    data_dir = Path(data_dir)
    tmp = out
    tmp.mkdir(parents=True, exist_ok=True)
    for name, added in (("train", selected.train), ("validation", selected.validation)):
        base = read_split(data_dir / f"{name}.csv")[:limit].assign(**{SOURCE: "data"})
        learnt = [c.row(label_set) for c in added]
        if name == "train":
            learnt = boosted(learnt, copies)
        rows = pd.concat([base, pd.DataFrame(learnt, columns=base.columns)])
        rows.to_csv(tmp / f"{name}.csv", index=False, quoting=csv.QUOTE_MINIMAL)
    for name in ("test.csv", "unused.csv", LABELS_FILE):
        if (data_dir / name).exists():
            shutil.copyfile(data_dir / name, tmp / name)
    pd.DataFrame([c.row(label_set) for c in selected.holdout], columns=["Label", "Text", SOURCE]).to_csv(
        tmp / HOLDOUT_FILE, index=False, quoting=csv.QUOTE_MINIMAL)


def read_holdout(data_dir: str | Path) -> pd.DataFrame | None:
    """A retrain data directory's held-out corrections (Label, Text), or None."""
    path = Path(data_dir) / HOLDOUT_FILE
    return read_split(path) if path.is_file() else None
