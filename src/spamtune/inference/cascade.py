"""The cascade: a cheap check that decides the messages it is sure of before the LLM, so only the rest pay for it
(tg-spam runs its cheap checks first; Rspamd's GPT module skips messages that are already clear).

The cheap model is the word + character n-gram SVM of a `train --cascade ngrams` run (RUN/cascade.safetensors,
stacking.py). Its margin below the run's `allow_below` is a final "ham", at or above `block_at` a final "spam";
between the bands the message goes on to the model (and the memory, and a stacked run's n-grams). The bands were
picked on held-out messages so that the n-gram model alone is that rarely wrong (decisions.pick_cascade_bands); a
style it never met scores between them, which is what sends it on to the LLM.

A correction in the memory of corrections (inference/memory.py) is found by the LLM's vectors, which a message
the cascade decides never gets. So a message whose n-grams are close to a remembered message's (TF-IDF cosine of
at least `NEAR_CORRECTION`, far looser than the memory's own threshold) is not decided here: it goes on to the
model and the memory, and a copy of a corrected message is still caught from the next request on.

`classify --no-cascade`, `serve --no-cascade` and `evaluate --no-cascade` (or a run without it) decide as before:
every message through the LLM.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from spamtune.calibration.decisions import CascadeBands
from spamtune.data.labels import POSITIVE_ID

if TYPE_CHECKING:
    from spamtune.calibration.stacking import NgramModel
    from spamtune.inference.memory import MemoryCheck, Remembered
    from spamtune.inference.pipeline import BatchOptions, CheckOutput, Verdict

# TF-IDF cosine (word and character parts averaged) at which a message counts as close to a remembered one: a copy
# with a changed name, amount or link keeps most of its n-grams and scores well above it
NEAR_CORRECTION = 0.5


class CascadeCheck:
    """The n-gram model's sure verdicts, final in its two bands (see the module docstring)."""

    name = "cascade"

    def __init__(self, ngrams: NgramModel, bands: CascadeBands, label_names: Sequence[str], char_cap: int) -> None:
        self.ngrams, self.bands, self.names, self.char_cap = ngrams, bands, list(label_names), char_cap
        self.memory: MemoryCheck | None = None  # set by the pipeline when a memory follows the model
        self._remembered: tuple[Remembered | None, Any] = (None, None)  # the memory's index and its features
        self._lock = threading.Lock()

    def run(self, texts: Sequence[str], options: BatchOptions, senders: Sequence[str | None] | None = None,
            vectors: np.ndarray | None = None) -> CheckOutput:
        from spamtune.inference.pipeline import CheckOutput

        # the n-grams read what the tokenizer read: the first char_cap characters
        features = self.ngrams.features([t[: self.char_cap] for t in texts])
        margins = self.ngrams.margins(features)
        near = self.near_corrections(features)
        return CheckOutput([self.verdict(float(m), bool(n)) for m, n in zip(margins, near)], margins)

    def verdict(self, margin: float, near_correction: bool) -> Verdict:
        from spamtune.inference.pipeline import Verdict

        b = self.bands
        if margin < b.allow_below:
            label, sure = self.names[1 - POSITIVE_ID], f"below {b.allow_below:+.3f}"
        elif margin >= b.block_at:
            label, sure = self.names[POSITIVE_ID], f"at or above {b.block_at:+.3f}"
        else:
            return Verdict(self.name, None, margin, f"n-gram model unsure: margin {margin:+.3f} between the bands "
                                                    f"({b.allow_below:+.3f}, {b.block_at:+.3f}): the model decides")
        if near_correction:
            return Verdict(self.name, None, margin, f"n-gram model sure ({margin:+.3f} {sure}) but the message is "
                                                    "like a remembered correction: the model and the memory decide")
        return Verdict(self.name, label, margin, f"n-gram model sure: margin {margin:+.3f} {sure}", final=True)

    def near_corrections(self, features) -> np.ndarray:
        """Whether each message's n-grams are within `NEAR_CORRECTION` of a message the memory remembers."""
        n = features.shape[0]
        if self.memory is None:
            return np.zeros(n, dtype=bool)
        self.memory.refresh()
        index = self.memory.index
        with self._lock:  # the remembered messages' features, recomputed when the memory's index is replaced
            seen, remembered = self._remembered
            if seen is not index:
                texts = [e.text[: self.char_cap] for e in index.active if e.text]
                remembered = self.ngrams.features(texts) if texts else None
                self._remembered = (index, remembered)
        if remembered is None:
            return np.zeros(n, dtype=bool)
        # each part is l2-normalised, so a row's norm is sqrt(2) and the dot product over 2 is the mean cosine
        similarity = (features @ remembered.T).toarray() / 2.0
        return similarity.max(axis=1) >= NEAR_CORRECTION

    def explain(self, texts: Sequence[str], verdicts: Sequence[Verdict], deadline: float) -> None:
        """The n-grams behind the margin: exact, as for a stacked run's n-grams."""
        from spamtune.inference.pipeline import explain_ngrams

        explain_ngrams(self.ngrams, self.names, self.char_cap, texts, verdicts, deadline)
