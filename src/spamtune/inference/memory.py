"""The memory of corrections: a check that decides a new message like the corrected (or confirmed) message it is
nearest to, from the next request on, without a retrain (tg-spam's similarity check, Rspamd's fuzzy hashes; here
with the run's own representation).

Each message is compared by the pooled vector the model's head reads (taken from the model check's own pass, so it
costs no second forward pass) with every remembered message's: cosine similarity, exact nearest neighbour by one
matrix product in numpy. Within a remembered message's reach (the run's memory threshold, picked at training time
so that it adds at most 0.05 points of FPR on the calibration ham, decisions.py, or narrower: below), its label
decides, and the verdict names it. Why numpy and not faiss or usearch: a memory holds what operators and users
corrected, thousands of messages, not millions; a brute-force product over 10,000 vectors of 576 floats takes about
a millisecond (benchmarks/learning_stream.py measures it), is exact, and a new entry is one row appended, with no
index to train or rebuild.

Which corrections are remembered (the store's rules first, monitoring/memory.py; then the run's):

    no text                  recorded with --no-store-text: nothing to compare with
    unknown label            not one of the run's labels
    conflicting corrections  the same message corrected to different labels
    needs review             an end user's correction against a prediction at least 99 % sure (the retrain's
                             guard): remembered once an operator confirms it
    learnt by this run       the run's training data holds it (a promoted retrain learnt it): the entry retires
    would flip held-out      an end user's correction that, at the run's threshold, would decide more than
    messages                 `FLIP_LIMIT` held-out messages (validation, calibration ham) against their label:
                             too close to the other class; listed for review until an operator confirms it

A remembered message decides messages at least as similar to it as the run's threshold, and more similar than the
nearest held-out message of another label (its `radius`): a correction near ordinary ham (a "hi mum, new number"
scam) reaches only what is closer to it than that ham, so no held-out message is ever decided against its label.

The entries are re-read when the source's revision moves, looked at no more than every `refresh_s` seconds, so a
correction made anywhere (POST /feedback, /admin, `spamtune feedback` in another process) counts within about a
second in every serving process. Vectors of entries already seen are kept; a new entry costs one forward pass.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from spamtune.calibration.decisions import MemoryCalibration, unit_rows

if TYPE_CHECKING:
    from spamtune.inference.api import TextClassifier
    from spamtune.inference.pipeline import BatchOptions, CheckOutput, Verdict

FLIP_LIMIT = 2  # held-out messages an entry may decide against their label at the threshold; more: refused
# above the nearest held-out message of another label: room for the unseen ham between it and the entry (0.01
# kept the report half's added FPR at 0 with 11 "hi mum" corrections, where 0.001 let 2 of 2,087 in)
RADIUS_MARGIN = 0.01
ACTIVE = "active"
SHOWN_CHARS = 80  # of a remembered message, in a verdict's reason


@dataclass
class MemoryEntry:
    """A corrected (or confirmed) message and what became of it: `status` is "active" or why it is not
    remembered (see the module docstring)."""

    id: str  # the prediction's id in the store
    text: str | None
    label: str  # the corrected (or confirmed) label
    source: str  # who corrected it: api (an end user), cli / admin (an operator)
    trusted: bool  # an operator's correction (or one an operator confirmed)
    corrected_at: datetime.datetime
    status: str = ACTIVE
    flips: int = 0  # held-out messages it would decide against their label at the run's threshold
    radius: float | None = None  # an active entry decides messages at least this similar to it

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "label": self.label, "source": self.source,
                "trusted": self.trusted, "corrected_at": self.corrected_at.isoformat(), "status": self.status,
                "flips": self.flips, "radius": self.radius}


@dataclass(frozen=True)
class Remembered:
    """The active entries with their unit vectors and reaches, replaced whole on a refresh, so a check reading it
    while another thread refreshes sees one version or the other, never a mix."""

    active: list[MemoryEntry]
    vectors: np.ndarray  # (len(active), D) unit rows
    radii: np.ndarray  # (len(active),) each entry decides messages at least this similar to it

    def nearest(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each vector: the entry it lies deepest within the reach of (index into `active`), its cosine
        similarity, and whether it is within that reach at all."""
        if not len(self.active):
            n = len(vectors)
            return np.full(n, -1), np.full(n, -np.inf), np.zeros(n, dtype=bool)
        sims = unit_rows(vectors) @ self.vectors.T
        best = (sims - self.radii).argmax(axis=1)
        rows = np.arange(len(best))
        return best, sims[rows, best], sims[rows, best] >= self.radii[best]


class MemorySource(Protocol):
    """Where the corrections live (the store: monitoring/memory.py). `revision` is cheap and moves with every
    correction; `entries` gives every correction with the store's status (module docstring)."""

    def revision(self) -> Any: ...

    def entries(self) -> list[MemoryEntry]: ...


class MemoryCheck:
    """The memory as a check after the model (it reads the model's pooled vectors): a message whose nearest
    remembered message is at least `threshold` similar gets that message's label, as a final verdict naming it."""

    name = "memory"
    reads_vectors = True  # the pipeline hands it the model check's pooled vectors

    def __init__(self, source: MemorySource, clf: TextClassifier, calibration: MemoryCalibration,
                 learnt: set[str] | None = None, refresh_s: float = 1.0) -> None:
        from spamtune.inference.pipeline import Refresher

        self.source, self.clf = source, clf
        self.threshold = calibration.threshold
        self.names = clf.label_names
        guard_vectors, guard_labels = unit_rows(calibration.guard_vectors), np.asarray(calibration.guard_labels)
        # per label: the held-out messages of the other labels, which an entry of that label must not reach
        self.others = [guard_vectors[guard_labels != k] for k in range(len(self.names))]
        self.learnt = learnt or set()  # prediction ids the run's training data holds
        self.entries: list[MemoryEntry] = []  # every correction, with its status
        dim = guard_vectors.shape[1]
        self.index = Remembered([], np.zeros((0, dim), dtype=np.float32), np.zeros(0, dtype=np.float32))
        self._cache: dict[str, np.ndarray] = {}  # text -> unit vector
        self.refresh = Refresher(lambda: source.revision(), lambda: source.entries(), self._load,
                                 "memory of corrections", lambda: len(self.active), refresh_s)

    # -- the entries ---------------------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Look at the source on the next message (this process recorded a correction)."""
        self.refresh.invalidate()

    def _load(self, entries: list[MemoryEntry]) -> None:
        for e in entries:
            if e.status == ACTIVE and e.label not in self.names:
                e.status = "unknown label"
            elif e.status == ACTIVE and e.id in self.learnt:
                e.status = "learnt by this run"
        new = sorted({e.text for e in entries if e.status == ACTIVE and e.text and e.text not in self._cache})
        if new:
            vectors = self.clf.embeddings(new, 32)
            assert vectors is not None, "a memory needs a run whose pooled vectors can be read"
            for text, v in zip(new, unit_rows(vectors)):
                self._cache[text] = v
        active, radii = [], []
        for e in entries:
            if e.status != ACTIVE:
                continue
            assert e.text is not None
            others = self.others[self.names.index(e.label)] @ self._cache[e.text]
            e.flips = int((others >= self.threshold).sum())
            if e.flips > FLIP_LIMIT and not e.trusted:
                e.status = "would flip held-out messages"
                continue
            # no further than the nearest held-out message of another label, less RADIUS_MARGIN
            e.radius = max(self.threshold, float(others.max(initial=-1.0)) + RADIUS_MARGIN)
            active.append(e)
            radii.append(e.radius)
        dim = self.index.vectors.shape[1]
        vectors = (np.stack([self._cache[e.text] for e in active if e.text]) if active
                   else np.zeros((0, dim), dtype=np.float32))
        self.entries, self.index = entries, Remembered(active, vectors, np.array(radii, dtype=np.float32))

    # -- the check -----------------------------------------------------------------------------------------------

    @property
    def active(self) -> list[MemoryEntry]:
        """The entries that decide."""
        return self.index.active

    def run(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None) -> CheckOutput:
        from spamtune.inference.pipeline import CheckOutput

        self.refresh()
        index = self.index  # one version throughout, whatever a refresh elsewhere does meanwhile
        if vectors is None or not len(index.active):
            return CheckOutput([None] * len(texts))
        best, sims, within = index.nearest(vectors)
        return CheckOutput([self.verdict(index.active[int(i)], float(s)) if ok else None
                            for i, s, ok in zip(best, sims, within)])

    def verdict(self, e: MemoryEntry, similarity: float) -> Verdict:
        from spamtune.inference.pipeline import Verdict

        text = e.text or ""
        shown = text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"
        who = "an operator" if e.trusted else "a user"
        return Verdict(self.name, e.label, similarity,
                       f"memory: like {shown!r} (similarity {similarity:.3f} >= {e.radius:.3f}), "
                       f"corrected to {e.label} by {who}",
                       evidence={"neighbours": [{"id": e.id, "label": e.label, "similarity": round(similarity, 6),
                                                 "text": text}]},
                       final=True)

    def explain(self, texts: Sequence[str], verdicts: Sequence[Verdict], deadline: float) -> None:
        """The remembered message is the evidence, already attached by `run`."""
